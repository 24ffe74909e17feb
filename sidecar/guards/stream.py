"""Scanning text that arrives in pieces, releasing it as early as is safe.

A streamed reply must reach the agent as it is produced, yet an entity (a
card number, a key, an email address) split across two pieces must never be
released half unredacted. `StreamScanner` keeps back only the tail that could
still be the beginning of an entity and releases everything before it:

* the trailing run of characters that tokens, addresses and keys are made of
  (letters, digits and `._%+-@:/=~[]\\!#$*^`), up to `WORD_LIMIT`, with the
  number run before it (a phone number's extension is written onto it);
* a trailing run of digits with the separators phone and card numbers use
  (spaces, `-().+/`), up to `NUMBER_LIMIT`;
* a trailing run of capitals, digits and spaces (a spaced IBAN), up to
  `IBAN_LIMIT`;
* a number followed by a space and a word still being written, up to
  `NUMBER_LIMIT` plus `UNIT_LIMIT`: whether `2147483648 b...` is a phone
  depends on whether the word becomes `bytes`;
* a PEM block whose END line has not arrived, up to the scanner's `max_hold`;
* the last `extra_hold` characters, for bundle patterns and deny-list phrases
  whose shape is not known here (their longest possible match, less one).

Detection runs over the held text plus `context` characters already released
(for word boundaries and the keyword before a secret's value); a finding that
crosses the release point holds everything from its start. `flush()` at the
end of the stream releases the rest. The scanner is sans-IO: bytes, events
and actions belong to the caller.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from sidecar.guards.finding import Finding

WORD_LIMIT = 4096  # a JWT or a long key is a single run of these characters
NUMBER_LIMIT = 40
UNIT_LIMIT = 12
IBAN_LIMIT = 48
DEFAULT_CONTEXT = 64
DEFAULT_MAX_HOLD = 16 * 1024

# Each pattern runs on the reversed tail, so `match` at position 0 measures the
# trailing run in time proportional to the run, never to the text.
# `[`, `]` and `\` belong to IPv6 and disguised URLs (the egress guard's hosts);
# `!#$*^` to password values the secrets guard finds after a keyword.
_WORD_RUN = re.compile(r"[A-Za-z0-9_.%+\-@:/=~\[\]\\!#$*^]*")
_NUMBER_RUN = re.compile(r"[0-9 \-().+/]*")
_IBAN_RUN = re.compile(r"[A-Z0-9 ]*")
_UNIT_RUN = re.compile(rf"(?:[A-Za-z\u00b5%]{{1,{UNIT_LIMIT}}}[ \t])(?=[0-9])[0-9 \-().+/]*")
_DIGIT = re.compile(r"[0-9]")
_PEM_BEGIN = "-----BEGIN"
_PEM_END = re.compile(r"-----END [A-Z0-9 ]*-----")

Scan = Callable[[str], list[Finding]]


@dataclass(frozen=True, slots=True)
class Release:
    """Text safe to pass on, and what was found in it (offsets into `text`)."""

    text: str
    findings: list[Finding]


def _trailing(pattern: re.Pattern[str], text: str, limit: int, *, digit: bool = False) -> int:
    window = text[-limit:][::-1]
    match = pattern.match(window)
    if match is None:
        return 0
    if digit and _DIGIT.search(window, 0, match.end()) is None:
        # Spaces and dashes alone do not start a number; an opening bracket or a plus
        # at the very end can ("(415) ...", "+44 ...").
        return 1 if window[:1] in ("(", "+") else 0
    return match.end()


def hold_from(text: str, floor: int, extra_hold: int, max_hold: int) -> int:
    """Where, in `text`, the part that must be kept back begins (never before `floor`)."""
    n = len(text)
    word = _trailing(_WORD_RUN, text, WORD_LIMIT)
    if 0 < word < n:
        # A word run can continue a number before it: `(415)555-2671x` may still become
        # the extension `x12`, and the phone then starts at the bracket.
        word += _trailing(_NUMBER_RUN, text[: n - word], NUMBER_LIMIT, digit=True)
    keep = max(
        word,
        _trailing(_NUMBER_RUN, text, NUMBER_LIMIT, digit=True),
        _trailing(_IBAN_RUN, text, IBAN_LIMIT, digit=True),
        _trailing(_UNIT_RUN, text, NUMBER_LIMIT + UNIT_LIMIT + 1),
        extra_hold,
    )
    start = n - keep
    pem = text.rfind(_PEM_BEGIN, max(floor, n - max_hold))
    if pem != -1 and pem < start and _PEM_END.search(text, pem) is None:
        start = pem
    return max(floor, start, n - max_hold)


class StreamScanner:
    """One scanner per stream of text (a choice's content, a tool call's arguments)."""

    __slots__ = ("_context", "_extra_hold", "_max_hold", "_pending", "_released", "_scan")

    def __init__(
        self,
        scan: Scan,
        *,
        extra_hold: int = 0,
        context: int = DEFAULT_CONTEXT,
        max_hold: int = DEFAULT_MAX_HOLD,
    ) -> None:
        self._scan = scan
        self._extra_hold = extra_hold
        self._context = context
        self._max_hold = max_hold
        self._pending = ""
        self._released = ""  # the last `context` characters released, unredacted

    @property
    def held(self) -> int:
        """How many characters are kept back right now."""
        return len(self._pending)

    def feed(self, piece: str) -> Release:
        self._pending += piece
        return self._release(final=False)

    def flush(self) -> Release:
        return self._release(final=True)

    def _release(self, *, final: bool) -> Release:
        ctx = self._released
        text = ctx + self._pending
        floor = len(ctx)
        cut = len(text) if final else hold_from(text, floor, self._extra_hold, self._max_hold)
        if cut == floor and not final:
            return Release("", [])
        findings = self._scan(text) if text else []
        # A finding across the cut holds everything from its start; repeat until stable,
        # since moving the cut back can put it inside an earlier finding.
        moved = True
        while moved and not final:
            moved = False
            for f in findings:
                if f.start < cut < f.end and f.start >= floor:
                    cut = f.start
                    moved = True
        released = text[floor:cut]
        mine = [
            Finding(
                f.kind, f.type, max(f.start, floor) - floor, f.end - floor, f.confidence, f.source
            )
            for f in findings
            if f.end > floor and f.end <= cut
        ]
        self._pending = text[cut:]
        self._released = (ctx + released)[-self._context :] if self._context else ""
        return Release(released, mine)
