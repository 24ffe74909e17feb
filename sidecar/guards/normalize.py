"""Text normalization for guards: undo the tricks that hide words from patterns.

Attackers write "ignore" with a Cyrillic "o" (U+043E), put zero-width spaces inside words,
space letters out ("i g n o r e"), use leetspeak ("1gn0r3") or wrap the whole
attack in base64. Patterns over the raw text miss all of these, and a pattern
per trick does not scale. So guards match against one *folded* form, in which
each of these variants collapses to plain lower-case ASCII words, and keep an
index map back to the original text: a finding must point at what the caller
actually sent, never at the folded copy.

The folded form is a matching form only. It is never shown, logged or
forwarded, so it may be lossy (e.g. every Cyrillic "er", U+0440, becomes "p").

Speed matters because every request passes here: ASCII text (the usual case)
takes a fast path; non-ASCII runs go through a codec error handler and a
cached per-character table; one RE2 scan tells which later stages have any
work; and the positional map is kept as a few segments rather than one
integer per character.
"""

from __future__ import annotations

import codecs
import re
import threading
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass, field

import re2

from sidecar.guards.encoded_payloads import decoded_payloads
from sidecar.guards.normalize_re2 import _re2_options, _re2_set

__all__ = ["FoldedText", "decoded_payloads", "fold", "fold_text"]


# --- per-character folding -------------------------------------------------

# Characters that render as nothing (or nearly) but are not format characters
# (category Cf) or combining marks, which are dropped by category.
_INVISIBLE = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0\u2800")

# Look-alikes that NFKC leaves alone, keyed by their case-folded form, as (from, to) strings
# written with escapes so the source stays readable ASCII.
_LOOKALIKES = (
    # Cyrillic
    ("\u0430\u0432\u0435\u0451\u0437\u0456\u0457\u0458\u043a\u043c", "abee3iijkm"),
    ("\u043d\u043e\u043f\u0440\u0441\u0442\u0443\u0445\u044c\u0455", "honpctyxbs"),
    ("\u0501\u051b\u051d\u04bb\u04cf\u04af", "dqwhly"),
    # Greek
    ("\u03b1\u03b2\u03b3\u03b5\u03b7\u03b9\u03ba\u03bc\u03bd\u03bf", "abyenikuvo"),
    ("\u03c0\u03c1\u03c4\u03c5\u03c7\u03c9\u03f2\u03f3", "nptuxwcj"),
    # Latin small capitals and other IPA / extended letters
    ("\u0261\u0131\u0237\u0251\u0269\u026a\u029f\u1d00\u0299\u1d04", "gijaiilabc"),
    ("\u1d05\u1d07\ua730\u0262\u029c\u1d0a\u1d0b\u1d0d\u0274\u1d0f", "defghjkmno"),
    ("\u1d18\u0280\ua731\u1d1b\u1d1c\u1d20\u1d21\u028f\u1d22\u00f8", "prstuvwyzo"),
    ("\u0111\u0142\u0127\u0167\u0253\u0257\u025b\u0192\u0266\u0268", "dlhtbdefhi"),
    ("\u0271\u0272\u0275\u028b\u01b4\u0225", "mnovyz"),
    # punctuation variants (so a curly "don\u2019t" matches "don't") and line separators
    ("\u2018\u2019\u201a\u201b\u2032\u00b4`\u201c\u201d\u201e", "'''''''\"\"\""),
    ("\u201f\u2033\u00ab\u00bb\u2010\u2011\u2012\u2013\u2014\u2015", '""""------'),
    ("\u2212\u2028\u2029\u0085", "-\n\n\n"),
)
_HOMOGLYPHS: dict[str, str] = {
    a: b for sources, targets in _LOOKALIKES for a, b in zip(sources, targets, strict=True)
}
_HOMOGLYPHS.update(
    {chr(0x1F1E6 + i): chr(ord("a") + i) for i in range(26)}
)  # regional indicators A..Z

_CACHE_LIMIT = 1 << 16  # distinct characters remembered; more are computed each time
_NOT_ONE: set[str] = set()  # characters seen that fold to other than exactly one character


def _fold_char_uncached(char: str) -> str:
    if char in _INVISIBLE or unicodedata.category(char) in ("Cf", "Mn", "Me", "Cs"):
        return ""
    out: list[str] = []
    for part in unicodedata.normalize("NFKC", char).casefold():
        for base in unicodedata.normalize("NFD", part):
            if not unicodedata.combining(base):
                out.append(_HOMOGLYPHS.get(base, base))
    return "".join(out)


class _FoldTable(dict[int, str]):
    """A `str.translate` table filled on first sight of each character."""

    def __missing__(self, code: int) -> str:
        char = chr(code)
        folded = _fold_char_uncached(char)
        if len(folded) != 1:
            _NOT_ONE.add(char)  # bounded: few code points delete or expand
        if len(self) < _CACHE_LIMIT:
            self[code] = folded
        return folded


_TABLE = _FoldTable()


# --- index maps --------------------------------------------------------------


@dataclass(slots=True)
class _Map:
    """Positions in a derived string -> positions in its source, as segments.

    Segment k starts at derived position `starts[k]` and maps derived position
    j to `origins[k] + (j - starts[k]) * steps[k]`. Step 1 is a copied run,
    step 0 one source character expanded to several, step 2 a spaced-out
    run ("i g n o r e") whose every other character was kept.
    """

    starts: list[int] = field(default_factory=list)
    origins: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    length: int = 0  # of the derived string built so far

    def add(self, origin: int, count: int, step: int = 1) -> None:
        """`count` derived characters from `origin`, `origin + step`, ..."""
        if count <= 0:
            return
        if step == 0 and count == 1:
            step = 1
        if (
            self.steps
            and self.steps[-1] == step
            and step
            and self.origins[-1] + (self.length - self.starts[-1]) * step == origin
        ):
            self.length += count  # continues the last segment
            return
        if self.starts and self.starts[-1] == self.length:  # the last one is empty
            self.origins[-1], self.steps[-1] = origin, step
        else:
            self.starts.append(self.length)
            self.origins.append(origin)
            self.steps.append(step)
        self.length += count

    def __call__(self, position: int) -> int:
        k = bisect_right(self.starts, position) - 1
        if k < 0:
            return position
        return self.origins[k] + (position - self.starts[k]) * self.steps[k]


@dataclass(frozen=True, slots=True)
class FoldedText:
    """A folded text and the way back to the original's character offsets."""

    text: str
    original_length: int
    _maps: tuple[_Map, ...] = ()  # applied last to first

    def to_original(self, position: int) -> int:
        for index_map in self._maps:
            position = index_map(position)
        return position

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The smallest original span that produced folded `text[start:end]`."""
        if end <= start:
            at = self.to_original(start) if start < len(self.text) else self.original_length
            return at, at
        return self.to_original(start), self.to_original(end - 1) + 1

    def index_map(self) -> list[int]:
        return [self.to_original(j) for j in range(len(self.text))]


# --- folding stages ----------------------------------------------------------


class _FoldRuns(threading.local):
    """Per-thread state of one `_fold_chars` call, for the codec error handler."""

    index_map: _Map | None = None
    done: int = 0  # original characters already covered by `index_map`


_RUNS = _FoldRuns()


def _fold_run(error: UnicodeError) -> tuple[bytes, int]:
    """Codec error handler: the folded form of one run of non-ASCII characters.

    Encoding to ASCII hands every run of non-ASCII characters to this handler
    while the ASCII in between is copied at C speed. Most runs fold one
    character for one (quotes, dashes, accented letters), which moves no
    position; the map is only started at the first character that is
    dropped or expands.
    """
    if not isinstance(error, UnicodeEncodeError):
        raise error
    start, end = error.start, error.end
    run = error.object[start:end]
    folded = run.translate(_TABLE)
    if len(folded) == len(run) and _NOT_ONE.isdisjoint(run):
        return folded.encode("utf-8"), end
    index_map = _RUNS.index_map
    if index_map is None:
        index_map = _RUNS.index_map = _Map()
    index_map.add(_RUNS.done, start - _RUNS.done)  # one for one since the last irregular run
    _RUNS.done = end
    if not folded:  # all invisible
        return b"", end
    pieces: list[str] = []
    for i, char in enumerate(run, start):
        piece = _TABLE[ord(char)]
        if piece:
            pieces.append(piece)
            index_map.add(i, len(piece), 0)
    return "".join(pieces).encode("utf-8"), end


codecs.register_error("sidecar.fold", _fold_run)


def _fold_chars(text: str) -> tuple[str, _Map | None]:
    """NFKC, invisible removal, homoglyphs and casefold; ASCII is just lower-cased."""
    if text.isascii():
        return text.lower(), None
    _RUNS.index_map, _RUNS.done = None, 0
    folded = text.encode("ascii", "sidecar.fold").decode("utf-8")
    index_map, _RUNS.index_map = _RUNS.index_map, None
    if index_map is not None:
        index_map.add(_RUNS.done, len(text) - _RUNS.done)
    # Folded non-ASCII output is already case-folded; lower() keeps lengths for it.
    return folded.lower(), index_map


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _subject(text: str) -> str | bytes:
    """What to hand RE2: ASCII as bytes skips the wrapper's offset conversion.

    Lone surrogates (possible in JSON strings) cannot be UTF-8 encoded; each
    becomes U+FFFD, so character offsets stay the same.
    """
    if text.isascii():
        return text.encode("ascii")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


_SEP = r"[ \t\r\n.\-_*|/+~:,'\"]"
_SPACED_RUN = rf"[a-z0-9@$](?:{_SEP}{{1,3}}[a-z0-9@$]){{3,}}"
_SPACED = re2.compile(rf"(?:^|[^a-z0-9@$])({_SPACED_RUN})(?:$|[^a-z0-9@$])", _re2_options())
_SEP_RUN = re.compile(rf"{_SEP}+")


def _collapse_spacing(text: str) -> tuple[str, _Map]:
    """ "i g n o r e  a l l" -> "ignore all": runs of four or more single characters.

    Inside a run, the separator used most often is dropped; any other one (a
    longer gap, or a different mark) becomes one space, so word breaks survive.
    """
    pieces: list[str] = []
    index_map = _Map()
    pos = 0
    for match in _SPACED.finditer(text):
        start, end = match.span(1)
        pieces.append(text[pos:start])
        index_map.add(pos, start - pos)
        run = text[start:end]
        separator = run[1]
        if run[1::2] == separator * (len(run) // 2):  # one separator throughout
            pieces.append(run[::2])
            index_map.add(start, len(run) // 2 + 1, 2)
            pos = end
            continue
        seps = list(_SEP_RUN.finditer(text, start, end))
        counts: dict[str, int] = {}
        for sep in seps:
            counts[sep.group()] = counts.get(sep.group(), 0) + 1
        usual = max(counts, key=lambda s: counts[s])
        cursor = start
        for sep in seps:
            pieces.append(text[cursor : sep.start()])
            index_map.add(cursor, sep.start() - cursor)
            if sep.group() != usual:
                pieces.append(" ")
                index_map.add(sep.start(), 1)
            cursor = sep.end()
        pieces.append(text[cursor:end])
        index_map.add(cursor, end - cursor)
        pos = end
    pieces.append(text[pos:])
    index_map.add(pos, len(text) - pos)
    return "".join(pieces), index_map


_SPLIT_WORD = r"[a-z]-[a-z]"
_HYPHEN_BEFORE_LETTER = re.compile(r"-(?=[a-z])")  # starts with a literal: a fast scan


def _join_hyphenated(text: str) -> tuple[str, _Map | None]:
    """ "i-nstruction" -> "instruction": drop hyphens between letters.

    Splitting words with hyphens hides them from word patterns; real compounds
    ("well-known") lose nothing that matters for matching.
    """
    pieces: list[str] = []
    index_map = _Map()
    pos = 0
    for match in _HYPHEN_BEFORE_LETTER.finditer(text):
        at = match.start()
        if at == 0 or not "a" <= text[at - 1] <= "z":
            continue
        pieces.append(text[pos:at])
        index_map.add(pos, at - pos)
        pos = at + 1
    pieces.append(text[pos:])
    index_map.add(pos, len(text) - pos)
    return "".join(pieces), index_map


_LEET_HINT = r"[a-z][0-9@$]|[0-9@$][a-z]"
_LEET_WORD = r"[a-z0-9@$]*(?:[a-z][0-9@$]|[0-9@$][a-z])[a-z0-9@$]*"
# Neighbouring leet words come as one match: fewer round trips through the RE2 wrapper.
_LEET_RUN = re2.compile(rf"{_LEET_WORD}(?:[ \t]+{_LEET_WORD})*", _re2_options())
_WORD_TOKEN = re.compile(r"[a-z0-9@$]+")
_DROP_LEET = str.maketrans("", "", "0123456789@$")
_MAX_LEET_TOKEN = 24  # longer tokens are identifiers, hashes or encodings, not words
_NOT_LEET = re.compile(r"\d+(?:st|nd|rd|th|s|am|pm|k|m|g|x|d|px|kb|mb|gb|ms)|[a-z]{1,3}\d+")
_LEET = str.maketrans("013457@$", "oieastas")


def _undo_leet(text: str) -> str:
    """ "1gn0r3" -> "ignore", only inside word-sized tokens that mix letters with leet digits.

    Tokens with fewer than two letters, ordinals and units ("3rd", "10am",
    "5kg"), short prefixed numbers ("mp3", "x86", "ipv4") and long runs (hashes,
    base64) are left alone. One character maps to one, so positions do not move.
    """
    pieces: list[str] = []
    pos = 0
    for run in _LEET_RUN.finditer(_subject(text)):
        for match in _WORD_TOKEN.finditer(text, *run.span()):
            start, end = match.span()
            token = match.group()
            if (
                end - start > _MAX_LEET_TOKEN
                or len(token.translate(_DROP_LEET)) < 2
                or token.isalpha()
                or _NOT_LEET.fullmatch(token)
            ):
                continue
            pieces.append(text[pos:start])
            pieces.append(token.translate(_LEET))
            pos = end
    if not pieces:
        return text
    pieces.append(text[pos:])
    return "".join(pieces)


_SPACED_HINT, _HYPHEN_HINT, _LEET_HINT_INDEX = 0, 1, 2
_FOLD_HINTS = _re2_set([_SPACED_RUN, _SPLIT_WORD, _LEET_HINT])


def _hints(text: str) -> set[int]:
    return set(_FOLD_HINTS.Match(text.encode("utf-8", "surrogatepass")) or ())


def fold_text(text: str) -> FoldedText:
    """The matching form of `text`, with the map back to the original's offsets."""
    folded, chars_map = _fold_chars(text)
    hints = _hints(folded)  # one scan says which of the later stages have work
    spacing_map = hyphen_map = None
    if _SPACED_HINT in hints:
        folded, spacing_map = _collapse_spacing(folded)
        hints = _hints(folded)
    if _HYPHEN_HINT in hints:
        folded, hyphen_map = _join_hyphenated(folded)
        hints = _hints(folded)
    if _LEET_HINT_INDEX in hints:
        folded = _undo_leet(folded)
    maps = tuple(m for m in (hyphen_map, spacing_map, chars_map) if m is not None)
    return FoldedText(folded, len(text), maps)


def fold(text: str) -> tuple[str, list[int]]:
    """A matching form of `text` and, for each of its characters, the original index."""
    folded = fold_text(text)
    return folded.text, folded.index_map()
