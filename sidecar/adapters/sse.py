"""Incremental Server-Sent Events parser in the sans-IO style.

Bytes go in as they arrive from the network, complete events come out; no
sockets, no buffering beyond the one event still being received. This lets
the proxy forward every chunk immediately while still learning usage, ids
and finish reasons from the stream. Event data stays bytes: most events are
only searched, and JSON parsers take bytes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    event: str  # "" when the stream did not name it ("message" per the spec)
    data: bytes


class SSEParser:
    """Feed raw bytes, get the events completed so far (WHATWG SSE rules)."""

    __slots__ = ("_buf", "_data", "_event", "_line_size", "_max", "_pieces")

    def __init__(self, max_event_bytes: int = 8 * 1024 * 1024) -> None:
        self._buf = b""
        # A long line arriving in many pieces is kept as pieces and joined once when it
        # ends, not copied on every piece (quadratic in its length).
        self._pieces: list[bytes] = []
        self._line_size = 0
        self._event = ""
        self._data: list[bytes] = []
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[Event]:
        # (A CR held back at the end of the line may be half of a CRLF: not this path.)
        if self._buf[-1:] not in (b"", b"\r") and b"\n" not in chunk and b"\r" not in chunk:
            self._line_size += len(chunk)
            if len(self._buf) + self._line_size > self._max:
                self._buf, self._pieces, self._line_size = b"", [], 0
            else:
                self._pieces.append(chunk)
            return []
        if self._pieces:
            self._buf = b"".join([self._buf, *self._pieces])
            self._pieces, self._line_size = [], 0
        buf = self._buf + chunk if self._buf else chunk
        events: list[Event] = []
        if b"\r" in buf:
            self._buf = self._feed_any_newline(buf, events)
        else:
            # The common case (LF only): let C split the lines.
            lines = buf.split(b"\n")
            self._buf = lines.pop()
            for line in lines:
                self._line(line, events)
        if len(self._buf) > self._max:
            # An endless line is not an event stream we can parse; drop it rather than grow.
            self._buf = b""
        return events

    def close(self) -> list[Event]:
        """End of stream: a final event without its blank line is discarded (per spec).

        A CR held back at the very end (it could have been half of a CRLF) is a
        line end after all.
        """
        events: list[Event] = []
        if self._pieces:
            self._buf = b"".join([self._buf, *self._pieces])
            self._pieces, self._line_size = [], 0
        if self._buf.endswith(b"\r"):
            self._line(self._buf[:-1], events)
        self._buf = b""
        self._data = []
        self._event = ""
        return events

    def _feed_any_newline(self, buf: bytes, events: list[Event]) -> bytes:
        start = 0
        n = len(buf)
        while start < n:
            nl = buf.find(b"\n", start)
            cr = buf.find(b"\r", start)
            if nl < 0 and cr < 0:
                break
            if cr >= 0 and (nl < 0 or cr < nl):
                if cr + 1 == n:
                    break  # a lone CR at the end may be the first half of CRLF
                end, nxt = cr, cr + (2 if buf[cr + 1] == 10 else 1)
            else:
                end, nxt = nl, nl + 1
            self._line(buf[start:end], events)
            start = nxt
        return buf[start:]

    def _line(self, line: bytes, events: list[Event]) -> None:
        if not line:
            if self._data:
                data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
                events.append(Event(self._event, data))
            self._data = []
            self._event = ""
            return
        if line.startswith(b"data"):
            value = line[4:]
            if value[:1] == b":":
                value = value[2:] if value[1:2] == b" " else value[1:]
                self._data.append(value)
            elif not value:
                self._data.append(b"")
        elif line.startswith(b"event:"):
            value = line[6:]
            self._event = (value[1:] if value[:1] == b" " else value).decode("utf-8", "replace")
