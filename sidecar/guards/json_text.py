"""Where in a tool call's JSON arguments a redaction may go: inside string values only.

A redaction replaces a span with `[PHONE]`, `****` or `[EMAIL_1]`. Inside a
JSON string that is still a string of the same type; over a bare number
(`{"bytes": 2147483648}` → `{"bytes": [PHONE]}`) or across a quote it is no
longer JSON, and the agent's tool never runs. So a redaction in arguments
that are JSON is kept only when it lies wholly inside one string's content
and does not cut an escape sequence (`\\n`, `\\u00e9`) in two.

The arguments of a streamed tool call arrive in pieces, so `JsonStrings`
reads them incrementally: fed each released piece in order, it says which
stretches of that piece are string content. It is sans-IO and costs one pass
over the characters. Arguments that do not start like JSON (a custom tool's
free-text input) are plain text: any span may be redacted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from sidecar.guards.finding import Finding

T = TypeVar("T")

_JSON_START = frozenset("{[")


class JsonStrings:
    """Reads JSON text piece by piece; `feed` returns where string content lies in each piece."""

    __slots__ = ("_escape", "_in_string", "_mode")

    def __init__(self) -> None:
        self._mode: bool | None = None  # None: not decided; True: JSON; False: plain text
        self._in_string = False
        self._escape = 0  # characters of an escape sequence still to come (-1: its letter)

    def feed(self, piece: str) -> Stretches:
        if self._mode is None:
            stripped = piece.lstrip()
            if stripped:
                self._mode = stripped[0] in _JSON_START
        if self._mode is not True:
            # Still only whitespace, or plain text: every span of it is free.
            return Stretches(((0, len(piece)),), frozenset(), plain=True)
        spans: list[tuple[int, int]] = []
        inside: set[int] = set()
        start = 0 if self._in_string else -1
        for i, ch in enumerate(piece):
            if self._escape:
                inside.add(i)  # a boundary here would cut the escape in two
                if self._escape == -1:
                    self._escape = 4 if ch == "u" else 0
                else:
                    self._escape -= 1
                continue
            if self._in_string:
                if ch == "\\":
                    self._escape = -1
                elif ch == '"':
                    spans.append((start, i))
                    self._in_string = False
            elif ch == '"':
                self._in_string = True
                start = i + 1
        if self._escape:
            inside.add(len(piece))  # the piece ends inside an escape
        if self._in_string:
            spans.append((start, len(piece)))
        return Stretches(tuple(spans), frozenset(inside), plain=False)


class Stretches:
    """The string content of one piece of JSON text, and the offsets inside escapes."""

    __slots__ = ("_inside", "_spans", "plain")

    def __init__(
        self, spans: tuple[tuple[int, int], ...], inside: frozenset[int], *, plain: bool
    ) -> None:
        self._spans = spans
        self._inside = inside
        self.plain = plain

    def holds(self, start: int, end: int) -> bool:
        """Whether [start, end) lies in one string's content without cutting an escape."""
        if self.plain:
            return True
        if start in self._inside or end in self._inside:
            return False
        return any(a <= start and end <= b for a, b in self._spans)


def string_stretches(text: str) -> Stretches:
    """The string content of a whole JSON text (plain text: everything)."""
    return JsonStrings().feed(text)


def in_strings(text: str, edits: Sequence[tuple[Finding, T]]) -> list[tuple[Finding, T]]:
    """The edits that may be applied to JSON `text` and leave it valid, of the same types."""
    if not edits:
        return []
    stretches = string_stretches(text)
    return [e for e in edits if stretches.holds(e[0].start, e[0].end)]
