"""Server-Sent Events in the sans-IO style: framing and parsing, no sockets.

Bytes go in as they arrive from the network. `EventFramer` cuts them at event
boundaries, so a relay lets whole events out (a gate or a guard acts on an
event before any of its bytes leave, and an error event can follow cleanly);
`SSEParser` turns them into events, so the proxy learns usage, ids and finish
reasons while forwarding every chunk at once. Event data stays bytes: most
events are only searched, and JSON parsers take bytes.

Where an event ends follows the WHATWG event-stream rules: a line ends with
CRLF, LF or CR, mixed freely, and an event ends with a blank line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

import orjson

from sidecar.bounds import DEFAULT_MAX_EVENT_BYTES
from sidecar.call import Usage
from sidecar.events import Dialect, StreamEvent

# Every CR or LF in an event stream ends a line (CRLF ends one), so a blank line is two
# line ends in a row, and two line ends in a row always hold one of the pairs LF LF, LF CR
# or CR CR (CR LF alone is one line end). A blank line ending in CR takes the LF after it.
_BLANK_LINE = re.compile(rb"\n\n|[\r\n]\r\n?")
_ENDS_AN_EVENT = (b"\n\n", b"\n\r", b"\r\r", b"\n\r\n", b"\r\r\n")  # a pair, then its LF


def last_event_end(data: bytes) -> int:
    """Where the last complete event in `data` ends; 0 when none is complete.

    A blank line that ends `data` with a CR counts as ended: an LF after it would
    only be one more blank line, which dispatches nothing.
    """
    if data.endswith(_ENDS_AN_EVENT):  # the common chunk: whole events
        return len(data)
    if b"\r" not in data:  # LF only, as nearly every upstream sends: one search
        at = data.rfind(b"\n\n")
        return at + 2 if at >= 0 else 0
    at = max(data.rfind(b"\n\n"), data.rfind(b"\n\r"), data.rfind(b"\r\r"))
    if at < 0:
        return 0
    # As `_BLANK_LINE` matches at `at`, without the call (this runs once per chunk).
    if data[at + 1] == 0x0A:
        return at + 2
    return at + 3 if data[at + 2 : at + 3] == b"\n" else at + 2


def split_events(data: bytes) -> list[bytes]:
    """Whole events in, each event's own bytes out (what follows the last one too)."""
    if b"\r" not in data:  # LF only, as nearly every upstream sends: let C split
        parts = data.split(b"\n\n")
        rest = parts.pop()
        if len(parts) == 1:
            return [data] if not rest else [parts[0] + b"\n\n", rest]
        events = [part + b"\n\n" for part in parts]
        if rest:
            events.append(rest)
        return events
    pieces: list[bytes] = []
    start = 0
    for found in _BLANK_LINE.finditer(data):
        pieces.append(data[start : found.end()])
        start = found.end()
    if start < len(data):
        pieces.append(data[start:])
    return pieces


def event_fields(raw: bytes) -> tuple[str, bytes | None]:
    """One whole event's name and data, from its own bytes (as `split_events` cuts them).

    The data is None when the event has no data line (a comment, a keep-alive):
    such an event dispatches nothing.
    """
    if raw.startswith(b"data: ") and raw.endswith(b"\n\n"):
        end = raw.find(b"\n")
        if end == len(raw) - 2 and b"\r" not in raw:  # the common event: one data line
            return "", raw[6:end]
    name = ""
    data: list[bytes] = []
    for line in raw.splitlines():
        if line.startswith(b"data"):
            value = line[4:]
            if value[:1] == b":":
                data.append(value[2:] if value[1:2] == b" " else value[1:])
            elif not value:
                data.append(b"")
        elif line.startswith(b"event:"):
            value = line[6:]
            name = (value[1:] if value[:1] == b" " else value).decode("utf-8", "replace")
    if not data:
        return name, None
    return name, data[0] if len(data) == 1 else b"\n".join(data)


def encode_event(event: StreamEvent) -> bytes:
    """An event a stage changed or added, as event-stream bytes."""
    head = f"event: {event.name}\n".encode() if event.name else b""
    return head + b"data: " + orjson.dumps(event.obj) + b"\n\n"


class StreamDecoder:
    """Whole events in, each decoded once into a `StreamEvent`; and back to bytes.

    The provider's `Dialect` says what each event means and learns usage as
    events pass (the stream observer's work, on the same parse the other
    stages share).
    """

    __slots__ = ("_dialect", "usage")

    def __init__(self, dialect: StreamDialect) -> None:
        self._dialect = dialect
        self.usage = Usage()

    def decode(self, events: bytes) -> list[StreamEvent]:
        dialect, usage = self._dialect, self.usage
        out: list[StreamEvent] = []
        for raw in split_events(events):
            name, data = event_fields(raw)
            event = StreamEvent(raw, name, data, dialect)
            if data is not None:
                dialect.observe(event, usage)
            out.append(event)
        return out

    @staticmethod
    def encode(events: list[StreamEvent], original: bytes, decoded: int) -> bytes:
        """The bytes to send for `events`: `original` itself when no stage changed any
        of the `decoded` events it held; else each event's own bytes unless changed."""
        if len(events) == decoded:
            for e in events:
                if e.edited or e.dropped:
                    break
            else:
                return original
        return b"".join([encode_event(e) if e.edited else e.raw for e in events if not e.dropped])


class StreamDialect(Dialect, Protocol):
    """A dialect that also learns the stream's usage, ids and finish reasons."""

    def observe(self, event: StreamEvent, usage: Usage) -> None: ...


def parse_events(data: bytes) -> list[Event]:
    """The events in a run of whole events (as an `EventFramer` lets them out)."""
    parser = SSEParser(max_event_bytes=max(len(data), 1))
    return parser.feed(data) + parser.close()


class EventTooLarge(Exception):
    """An event grew past the framer's bound before it ended."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"an event larger than {limit} bytes")
        self.what = "an event"
        self.limit = limit


class EventFramer:
    """Lets a byte stream out in whole events, holding back the one still arriving.

    What is held is kept as pieces and joined once, when its event ends: joining
    it with every new piece would copy a long event once per piece (quadratic in
    its size). It holds at most `max_event_bytes`, then raises `EventTooLarge`.
    """

    __slots__ = ("_max", "_pieces", "size")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._pieces: list[bytes] = []
        self.size = 0  # bytes held

    def feed(self, chunk: bytes) -> bytes:
        """Everything up to the last complete event, this chunk included; holds the rest."""
        pieces = self._pieces
        if not pieces:
            end = last_event_end(chunk)
            if end == len(chunk):
                return chunk
            self._hold(chunk[end:])
            return chunk[:end]
        # A blank line may start in what is held: look at its last two bytes with the chunk.
        tail = pieces[-1][-2:]
        if len(tail) < 2 and len(pieces) > 1:
            tail = (pieces[-2] + tail)[-2:]
        end = last_event_end(tail + chunk)
        if end == 0:
            self._hold(chunk)
            return b""
        end -= len(tail)
        out = b"".join([*pieces, chunk[:end]])
        pieces.clear()
        self.size = 0
        if end < len(chunk):
            self._hold(chunk[end:])
        return out

    def flush(self) -> bytes:
        """End of stream: what is held (an event the upstream never ended)."""
        rest = b"".join(self._pieces)
        self._pieces.clear()
        self.size = 0
        return rest

    def _hold(self, piece: bytes) -> None:
        self._pieces.append(piece)
        self.size += len(piece)
        if self.size > self._max:
            raise EventTooLarge(self._max)


@dataclass(frozen=True, slots=True)
class Event:
    event: str  # "" when the stream did not name it ("message" per the spec)
    data: bytes


class SSEParser:
    """Feed raw bytes, get the events completed so far (WHATWG SSE rules)."""

    __slots__ = ("_buf", "_data", "_event", "_line_size", "_max", "_pieces")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
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
