"""Prompt-injection detector: weighted phrase families over folded text.

Why weighted families and not a list of known attacks: attacks are rephrased
endlessly ("ignore" / "disregard" / "forget", "previous" / "prior" / "above",
"instructions" / "rules" / "directives"), so each signal is a small grammar of
synonyms with closed sets of filler words between them, matched on the folded
text (see `normalize`) so homoglyphs, zero-width characters, spaced letters and
leetspeak do not hide the words. A strong signal ("ignore all previous
instructions") decides alone; weak ones ("act as", "no restrictions",
"stay in character") only count together, and the jailbreak-persona ones count
less unless the text talks to an AI model at all ("ChatGPT", "language model",
"prompt"), which keeps novels and customer mail from adding up to an attack.
Variants of one phrase that match the same words count once, and long texts
are scored per window, so cues scattered across a book do not sum.

Role-play jailbreaks are caught by what they say about the model, not by the
role-play: a persona that is an AI without rules ("an AI that is not bound by
any restrictions"), that defies its maker's policy ("breaks OpenAI's rules"),
that answers instead of the model ("not as ChatGPT"), or a format that gives
the model two voices. "Act as", "pretend" and "stay in character" alone stay
weak, since stories and ordinary role-play prompts use them too.

The weights were set from the phrase families, then checked against long
benign text (library documentation, licences, LLM SDK docs) as well as the
development set; they are not fitted to individual rows.

Speed: every signal is compiled once into one RE2 set, so a text is scanned
once for all of them in linear time whatever it contains; only the signals that
are present are searched again for their positions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice

import re2

from sidecar.guards.encoded_payloads import decoded_payloads
from sidecar.guards.finding import Finding
from sidecar.guards.injection_signals import AI_CONTEXT, ENCODED, SIGNALS, TYPES
from sidecar.guards.normalize import fold_text
from sidecar.guards.re2_sets import SplitSet

__all__ = ["SIGNALS", "TYPES", "PromptInjectionDetector"]

_GATE = 0.6  # weight factor of gated signals when nothing in the text talks to a model
_SUPPORT = 0.5  # weight factor of a signal of another type
_MIN_OWN = 0.3  # a type is reported only with at least this much evidence of its own
_WINDOW = 4000  # bytes of folded text: weak cues farther apart than this do not add up
_MAX_HITS = 32  # positions kept per signal: enough to place a finding, bounded on floods


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.max_mem = 64 << 20
    return options


@dataclass(frozen=True, slots=True)
class _Hit:
    signal: int
    start: int  # in the scanned (folded) text
    end: int


class PromptInjectionDetector:
    """Finds prompt-injection attempts in a text; see the module docstring for how.

    `threshold` is the confidence (0..1) at which a type is reported; `decode`
    also reads base64 / hex / rot13 / tag-character payloads, reported as
    ENCODED_PAYLOAD with the span of the encoded segment.
    """

    __slots__ = ("_decode", "_patterns", "_set", "_threshold")

    def __init__(self, *, threshold: float = 0.5, decode: bool = True) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("threshold must be between 0 and 1")
        self._threshold = threshold
        self._decode = decode
        self._set = SplitSet([signal.pattern for signal in SIGNALS], _re2_options)
        self._patterns = [re2.compile(signal.pattern, _re2_options()) for signal in SIGNALS]

    def scan(self, text: str) -> list[Finding]:
        if not text:
            return []
        folded = fold_text(text)
        findings = [
            Finding("prompt_injection", type_, *folded.original_span(start, end), confidence)
            for type_, (confidence, start, end) in self._score(folded.text).items()
        ]
        if self._decode:
            findings.extend(self._scan_payloads(text))
        findings.sort(key=lambda f: (f.start, f.end, f.type))
        return findings

    def _scan_payloads(self, text: str) -> list[Finding]:
        best: dict[tuple[int, int], float] = {}
        for start, end, decoded in decoded_payloads(text):
            scores = self._score(fold_text(decoded).text)
            if scores:
                confidence = max(c for c, _, _ in scores.values())
                best[(start, end)] = max(confidence, best.get((start, end), 0.0))
        return [
            Finding("prompt_injection", ENCODED, start, end, round(confidence, 3))
            for (start, end), confidence in best.items()
        ]

    def _hits(self, subject: bytes) -> tuple[list[_Hit], bool]:
        """Where the present signals match (first few times each); is a model addressed?

        Offsets are in the UTF-8 bytes: RE2 reads bytes without the wrapper's
        per-match conversion to character offsets.
        """
        hits: list[_Hit] = []
        addressed = False
        for index in self._set.match(subject):
            if _TYPE_OF[index] == AI_CONTEXT:
                addressed = True
                continue
            for match in islice(self._patterns[index].finditer(subject), _MAX_HITS):
                hits.append(_Hit(index, match.start(), match.end()))
        hits.sort(key=lambda h: h.start)
        return hits, addressed

    def _score(self, text: str) -> dict[str, tuple[float, int, int]]:
        """Per reported type: (confidence, start, end) in `text`, at or above the threshold.

        Signals that match overlapping words describe one phrase, so each run of
        overlapping hits counts once, as its strongest signal. The score of a type
        is the best over windows of `_WINDOW` bytes of folded text. A window's signals
        can only grow when a signal not yet in it enters, so windows are scored only then.
        """
        data = text.encode("utf-8", "surrogatepass")
        hits, addressed = self._hits(data)
        if not hits:
            return {}
        weights = _ADDRESSED_WEIGHTS if addressed else _UNADDRESSED_WEIGHTS
        hits = _strongest_of_overlaps(hits, weights)
        counts: dict[int, int] = {}
        best: dict[str, tuple[float, int, int]] = {}  # type -> (score, first, last) hit index
        first = 0
        for last, hit in enumerate(hits):
            while hit.start - hits[first].start > _WINDOW:
                gone = hits[first].signal
                counts[gone] -= 1
                if not counts[gone]:
                    del counts[gone]
                first += 1
            counts[hit.signal] = counts.get(hit.signal, 0) + 1
            if counts[hit.signal] > 1:
                continue
            for type_, score in _score_signals(counts, weights).items():
                if score > best.get(type_, (0.0, 0, 0))[0]:
                    best[type_] = (score, first, last)
        out: dict[str, tuple[float, int, int]] = {}
        for type_, (score, first, last) in best.items():
            if score < self._threshold:
                continue
            own = [h for h in hits[first : last + 1] if _TYPE_OF[h.signal] == type_]
            start, end = min(h.start for h in own), max(h.end for h in own)
            if len(data) != len(text):  # back from UTF-8 offsets to characters
                start, end = (
                    len(data[:start].decode("utf-8", "surrogatepass")),
                    len(data[:end].decode("utf-8", "surrogatepass")),
                )
            out[type_] = (score, start, end)
        return out


def _strongest_of_overlaps(hits: list[_Hit], weights: list[float]) -> list[_Hit]:
    """Per family, one hit per run of overlapping hits: the one with most weight."""
    out: list[_Hit] = []
    last: dict[str, tuple[int, int]] = {}  # family -> (index in out, reach)
    for hit in hits:  # sorted by start
        family = _FAMILIES[hit.signal]
        index, reach = last.get(family, (-1, -1))
        if hit.start < reach:
            if weights[hit.signal] > weights[out[index].signal]:
                out[index] = hit
            last[family] = (index, max(reach, hit.end))
        else:
            last[family] = (len(out), hit.end)
            out.append(hit)
    out.sort(key=lambda h: h.start)  # a replacement may start after later hits
    return out


_FAMILIES = [s.family or s.name for s in SIGNALS]


_ADDRESSED_WEIGHTS = [s.weight for s in SIGNALS]
_UNADDRESSED_WEIGHTS = [s.weight * (_GATE if s.gated else 1.0) for s in SIGNALS]


_TYPE_OF = [s.type for s in SIGNALS]


def _score_signals(present: Iterable[int], weights: list[float]) -> dict[str, float]:
    """Confidence per type from the distinct signals present in one window.

    A noisy-or of the type's own signals, joined with a noisy-or of the other types'
    signals at `_SUPPORT` times their weight; kept as products of misses per type.
    """
    miss: dict[str, float] = {}  # per type: product of (1 - weight)
    support_miss: dict[str, float] = {}  # per type: product of (1 - _SUPPORT * weight)
    for index in present:
        type_, weight = _TYPE_OF[index], weights[index]
        miss[type_] = miss.get(type_, 1.0) * (1.0 - weight)
        support_miss[type_] = support_miss.get(type_, 1.0) * (1.0 - _SUPPORT * weight)
    out: dict[str, float] = {}
    for type_, own_miss in miss.items():
        if 1.0 - own_miss < _MIN_OWN:
            continue
        others = 1.0
        for other, other_miss in support_miss.items():
            if other != type_:
                others *= other_miss
        out[type_] = round(min(1.0 - own_miss * others, 0.99), 3)
    return out
