"""Finding encoded segments in a text and the readable text they decode to.

Attackers wrap an attack in base64, hex, rot13, Morse or invisible Unicode
tags so that patterns over the text never see it. Decoding is a separate
concern from folding: it looks for whole segments rather than characters,
carries its own budget against adversarial input, and its result is matched
on its own rather than mapped back character by character.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import islice

import re2

from sidecar.guards.normalize_re2 import _re2_options, _re2_set

__all__ = ["decoded_payloads"]

_MAX_SEGMENTS = 32  # candidate segments examined per call and kind of encoding
_MAX_SEGMENT_CHARS = 16384  # longer segments are decoded from their start only
_MAX_TOTAL_CHARS = 65536  # decoded text per call, all depths together
_SAMPLE = 2048  # characters inspected to judge whether a decoding is text

_HEX_ESCAPED = re2.compile(
    r"(?:(?:\\x|0x|%)[0-9A-Fa-f]{2}[ ,]?){8,}|[0-9A-Fa-f]{2}(?:[ :,\-][0-9A-Fa-f]{2}){7,}",
    _re2_options(),
)
_HEX_DIGIT_PAIRS = re.compile(r"[0-9A-Fa-f]{2}")
_HEX_ONLY = re.compile(r"(?:[0-9A-Fa-f]{2})+")
_TAGS = re.compile(r"[\U000e0020-\U000e007e]{4,}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")
_ROT13 = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    "NOPQRSTUVWXYZABCDEFGHIJKLMnopqrstuvwxyzabcdefghijklm",
)
# The rot13 forms of very common English words, which are rarely words themselves.
_ROT13_HINT = re2.compile(
    r"(?i)\b(?:gur|lbh|lbhe|naq|nyy|vtaber|cerivbhf|vafgehpgvbaf|flfgrz|cebzcg|gb|bs|vf|"
    r"vg|gung|jvgu|sbe|ner|guvf|abj|erirny|sbetrg|qvfertneq|ehyrf|cnffjbeq|fnl|cevag)\b",
    _re2_options(),
)
_ROT13_LINE = re2.compile(r"[A-Za-z][A-Za-z0-9 ,.;:'\"!?()\-]*", _re2_options())
# Morse code: at least 12 letters of dots and dashes, letters split by a space, words by
# "/", "|" or more spaces. Decoded only where the result is mostly English (as rot13).
_MORSE_RUN = re2.compile(r"(?:[.\-]{1,7}(?: {1,3}| ?[/|] ?)){11,}[.\-]{1,7}", _re2_options())
_MORSE_WORD_GAP = re.compile(r" ?[/|] ?| {2,}")
_MORSE_CODES = (  # a-z, 0-9, then the punctuation in `_MORSE_LETTERS`
    ".- -... -.-. -.. . ..-. --. .... .. .--- -.- .-.. -- -. --- .--. --.- .-. ... - "
    "..- ...- .-- -..- -.-- --.. ----- .---- ..--- ...-- ....- ..... -.... --... ---.. "
    "----. .-.-.- --..-- ..--.. .----. -.-.-- -..-. -.--. -.--.- ---... -.-.-. -...- "
    ".-.-. -....- .-..-. .--.-."
)
_MORSE_LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789.,?'!/():;=+-\"@"
_MORSE = dict(zip(_MORSE_CODES.split(), _MORSE_LETTERS, strict=True))
_WORD = re.compile(r"[a-z]+")
# Common English words plus the vocabulary of instructions to a model: a rot13
# decoding counts as text when most of its words are in here.
_ENGLISH_WORDS = """
    a about above act after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing don down during
    each few for from further had has have having he her here hers him his how i if in into
    is it its itself just me more most my no nor not now of off on once only or other our
    out over own same she should so some such than that the their them then there these
    they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yourself new must never always
    ignore disregard forget previous prior instructions instruction prompt system rules
    reveal print show tell say repeat output secret password key give me write reply
    respond answer following text message above below everything anything pretend role
    mode developer admin assistant model ai user please stop instead only exactly word
    words first initial original hidden access data send email tool call execute run"""
_ENGLISH = frozenset(_ENGLISH_WORDS.split())


@dataclass(slots=True)
class _Budget:
    segments: dict[str, int] = field(default_factory=dict)  # examined, per kind of encoding
    chars: int = _MAX_TOTAL_CHARS


@lru_cache(maxsize=8)
def _encoded_hints(min_length: int) -> tuple[re2.Set, re2._Regexp]:
    """One scan for every kind of encoding, and the base64 run for this minimum length."""
    base64_run = rf"[A-Za-z0-9+/_\-]{{{max(min_length, 4)},}}={{0,2}}"
    hints = _re2_set([base64_run, _HEX_ESCAPED.pattern, _ROT13_HINT.pattern, _MORSE_RUN.pattern])
    return hints, re2.compile(base64_run, _re2_options())


def _looks_like_text(decoded: str) -> bool:
    sample = decoded[:_SAMPLE]
    if not sample.strip() or _CONTROL.search(sample):
        return False
    if not sample.isprintable():
        printable = sum(1 for c in sample if c.isprintable() or c in "\t\n\r")
        if printable < 0.95 * len(sample):
            return False
    # Words and spaces, or the letters and digits of a further encoded layer.
    wordlike = sum(1 for c in sample if c.isalnum() or c == " ")
    return wordlike >= 0.6 * len(sample)


def _decode_bytes(raw: bytes) -> str | None:
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return decoded if _looks_like_text(decoded) else None


def _decode_base64(segment: str) -> str | None:
    body = segment.rstrip("=")
    body = body[: len(body) - len(body) % 4] if len(body) % 4 == 1 else body
    padded = body + "=" * (-len(body) % 4)
    urlsafe = "-" in body or "_" in body
    if urlsafe and ("+" in body or "/" in body):
        return None
    try:
        if urlsafe:
            raw = base64.urlsafe_b64decode(padded)
        else:
            raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return _decode_bytes(raw)


def _decode_hex(segment: str) -> str | None:
    digits = "".join(_HEX_DIGIT_PAIRS.findall(segment.replace("0x", " ").replace("\\x", " ")))
    try:
        return _decode_bytes(bytes.fromhex(digits))
    except ValueError:
        return None


def _english_ratio(text: str) -> tuple[float, int]:
    words = _WORD.findall(text.lower())
    if not words:
        return 0.0, 0
    return sum(1 for w in words if w in _ENGLISH) / len(words), len(words)


def _decode_morse(segment: str) -> str | None:
    words: list[str] = []
    codes = unknown = 0
    for word in _MORSE_WORD_GAP.split(segment.strip()):
        letters = []
        for code in word.split():
            codes += 1
            letter = _MORSE.get(code)
            if letter is None:
                unknown += 1
            else:
                letters.append(letter)
        if letters:
            words.append("".join(letters))
    if unknown * 10 > codes:  # dashes and dots, but not Morse
        return None
    decoded = " ".join(words)
    ratio, count = _english_ratio(decoded)
    return decoded if count >= 3 and ratio >= 0.5 else None


def _has_tags(text: str) -> bool:
    encoded = text.encode("utf-8", "surrogatepass")  # C speed, unlike a regex over wide text
    return b"\xf3\xa0\x80" in encoded or b"\xf3\xa0\x81" in encoded


def _char_spans(data: bytes, spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """UTF-8 byte offsets -> character offsets, in one pass over `data`."""
    chars: dict[int, int] = {}
    done_bytes = done_chars = 0
    for offset in sorted({o for start, end, _ in spans for o in (start, end)}):
        done_chars += len(data[done_bytes:offset].decode("utf-8", "surrogatepass"))
        chars[offset] = done_chars
        done_bytes = offset
    return [(chars[start], chars[end], how) for start, end, how in spans]


def _two_rot13_hints(data: bytes) -> bool:
    return sum(1 for _ in islice(_ROT13_HINT.finditer(data), 2)) >= 2


def _candidates(text: str, min_length: int) -> list[tuple[int, int, str]]:
    """Segments that may be encoded, as (start, end, how), in text order.

    Kinds may overlap (a base64 run inside a rot13-looking line); each is tried.
    """
    found: list[tuple[int, int, str]] = []
    if not text.isascii() and _has_tags(text):
        found.extend((m.start(), m.end(), "tags") for m in _TAGS.finditer(text))
    hint_set, base64_run = _encoded_hints(min_length)
    data = text.encode("utf-8", "surrogatepass")  # RE2 on bytes: no per-match conversion
    hints = hint_set.Match(data) or ()
    spans: list[tuple[int, int, str]] = []
    if 0 in hints:
        spans.extend((m.start(), m.end(), "b64") for m in base64_run.finditer(data))
    if 1 in hints:
        spans.extend((m.start(), m.end(), "hex") for m in _HEX_ESCAPED.finditer(data))
    if 2 in hints and _two_rot13_hints(data):
        # only lines that themselves look like rot13 English, so prose cannot crowd them out
        spans.extend(
            (m.start(), m.end(), "rot13")
            for m in _ROT13_LINE.finditer(data)
            if _two_rot13_hints(m.group())
        )
    if 3 in hints:
        spans.extend((m.start(), m.end(), "morse") for m in _MORSE_RUN.finditer(data))
    if len(data) != len(text):
        spans = _char_spans(data, spans)
    found.extend(span for span in spans if span[1] - span[0] >= min_length)
    found.sort(key=lambda c: (c[0], c[0] - c[1]))
    return found


def _decode_candidate(segment: str, how: str) -> str | None:
    if how == "b64":
        if _HEX_ONLY.fullmatch(segment):
            return _decode_hex(segment) or _decode_base64(segment)
        return _decode_base64(segment)
    if how == "hex":
        return _decode_hex(segment)
    if how == "rot13":
        decoded = segment.translate(_ROT13)
        ratio, words = _english_ratio(decoded)
        before, _ = _english_ratio(segment)
        return decoded if words >= 3 and ratio >= 0.5 and ratio > before + 0.2 else None
    if how == "morse":
        return _decode_morse(segment)
    if how == "tags":  # invisible Unicode tags spell ASCII, offset by U+E0000
        return "".join(chr(ord(c) - 0xE0000) for c in segment)
    return None


def _payloads(
    text: str, depth: int, min_length: int, budget: _Budget
) -> list[tuple[int, int, str]]:
    out: list[tuple[int, int, str]] = []
    for start, end, how in _candidates(text, min_length):
        if budget.chars <= 0:
            break
        if budget.segments.get(how, 0) >= _MAX_SEGMENTS:
            continue  # each kind has its own count, so one kind cannot starve another
        budget.segments[how] = budget.segments.get(how, 0) + 1
        if end - start > _MAX_SEGMENT_CHARS:
            end = start + _MAX_SEGMENT_CHARS  # a multiple of 4 and of 2: still decodable
        decoded = _decode_candidate(text[start:end], how)
        if decoded is None or len(decoded) < 4:
            continue
        decoded = decoded[: budget.chars]
        budget.chars -= len(decoded)
        out.append((start, end, decoded))
        if depth > 1:
            for _, _, inner in _payloads(decoded, depth - 1, min_length, budget):
                out.append((start, end, inner))
    return out


def decoded_payloads(
    text: str, *, max_depth: int = 2, min_length: int = 16
) -> list[tuple[int, int, str]]:
    """Encoded segments of `text` that decode to readable text: (start, end, decoded).

    Looks for base64 / base64url, hex (plain, spaced, `\\x`, `0x`, `%`), rot13 and
    Morse code (only where the result is mostly common English or instruction words) and
    invisible Unicode tag characters, which spell ASCII ("ASCII smuggling").
    A decoded payload is searched again, up to `max_depth` layers; nested
    results carry the outer segment's span, since that is what the original
    text contains. Work is capped by segment count and decoded size.
    """
    if max_depth < 1 or not text:
        return []
    return _payloads(text, max_depth, min_length, _Budget())
