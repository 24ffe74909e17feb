"""The SSE parser must give the same events however the bytes are split."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.adapters.sse import (
    Event,
    EventFramer,
    EventTooLarge,
    SSEParser,
    last_event_end,
    parse_events,
    split_events,
)

STREAM = (
    b": comment to ignore\n"
    b"event: message_start\n"
    b'data: {"a": 1}\n\n'
    b"data: line one\n"
    b"data: line two\n\n"
    b"event: ping\r\n"
    b"data:no-space\r\n\r\n"
    b"data: [DONE]\r\r"
)
EXPECTED = [
    Event("message_start", b'{"a": 1}'),
    Event("", b"line one\nline two"),
    Event("ping", b"no-space"),
    Event("", b"[DONE]"),
]


def feed_all(chunks: list[bytes]) -> list[Event]:
    parser = SSEParser()
    events: list[Event] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    events.extend(parser.close())
    return events


def test_whole_stream() -> None:
    assert feed_all([STREAM]) == EXPECTED


def test_byte_by_byte() -> None:
    assert feed_all([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_every_two_way_split(cut: int) -> None:
    assert feed_all([STREAM[:cut], STREAM[cut:]]) == EXPECTED


def test_three_way_splits_sampled() -> None:
    for a, b in itertools.islice(itertools.combinations(range(1, len(STREAM)), 2), 0, None, 7):
        assert feed_all([STREAM[:a], STREAM[a:b], STREAM[b:]]) == EXPECTED


def test_unterminated_event_is_not_emitted() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: partial") == []
    assert parser.close() == []


def test_utf8_split_inside_a_character() -> None:
    data = "data: héllo ✓\n\n".encode()
    cut = data.index("✓".encode()) + 1
    assert feed_all([data[:cut], data[cut:]]) == [Event("", "héllo ✓".encode())]


def test_runaway_line_is_dropped_not_kept() -> None:
    parser = SSEParser(max_event_bytes=64)
    parser.feed(b"data: " + b"x" * 100)
    assert parser.feed(b"\n\ndata: ok\n\n") == [Event("", b"ok")]


def test_field_rules() -> None:
    # "data" with no colon is an empty data line; "database:" is another field entirely.
    stream = b"data\ndata: x\ndatabase: y\nid: 7\nretry: 10\n\n"
    assert feed_all([stream]) == [Event("", b"\nx")]


# --- framing: any line endings, any split --------------------------------------------

_ENDINGS = st.sampled_from([b"\n", b"\r\n", b"\r"])
_VALUE = st.text(st.characters(blacklist_characters="\r\n", codec="utf-8"), max_size=12)


@st.composite
def _streams(draw: st.DrawFn) -> tuple[bytes, list[Event], list[int]]:
    """An event stream with each line ending drawn on its own; its events, where each ends."""
    out: list[bytes] = []
    events: list[Event] = []
    ends: list[int] = []

    def line(text: bytes) -> None:
        end = draw(_ENDINGS)
        if not text and out and out[-1].endswith(b"\r") and end == b"\n":
            end = b"\r\n"  # a CR then an LF would be one CRLF line end, not two
        out.append(text + end)

    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            line(b": " + draw(_VALUE).encode())
        name = draw(st.one_of(st.just(""), _VALUE.filter(bool)))
        if name:
            line(b"event: " + name.encode())
        data = draw(st.lists(_VALUE, min_size=1, max_size=3))
        for value in data:
            line(b"data: " + value.encode())
        line(b"")
        events.append(Event(name, "\n".join(data).encode()))
        ends.append(sum(map(len, out)))
    return b"".join(out), events, ends


def _cuts(stream: bytes, data: st.DataObject) -> list[bytes]:
    points = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    bounds = [0, *points, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_framing_gives_the_same_events_however_the_stream_is_split(data: st.DataObject) -> None:
    stream, expected, ends = data.draw(_streams())
    framer = EventFramer()
    released: list[bytes] = []
    seen = 0
    for piece in _cuts(stream, data):
        released.append(framer.feed(piece))
        seen += len(piece)
        # Nothing complete is held back: every event ended so far has gone out (but for
        # the LF of a blank line's CRLF that arrives after its CR went out).
        ended = max([0, *(end for end in ends if end <= seen)])
        assert sum(map(len, released)) >= ended - (stream[ended - 2 : ended] == b"\r\n")
        assert framer.size == seen - sum(map(len, released))
    released.append(framer.flush())
    assert released[-1] in (b"", b"\n")
    assert b"".join(released) == stream
    # Each piece let out is whole events: parsed on its own, it gives its events entire.
    assert [e for piece in released for e in parse_events(piece)] == expected
    assert feed_all(_cuts(stream, data)) == expected
    # The events of a run of whole events, one by one.
    pieces = split_events(stream)
    assert b"".join(pieces) == stream
    assert [e for piece in pieces for e in parse_events(piece)] == expected
    assert all(len(parse_events(piece)) <= 1 for piece in pieces)


@pytest.mark.parametrize(
    ("stream", "ends"),
    [
        (b"data: a\n\ndata: b\n\n", [9, 18]),
        (b"data: a\r\n\r\ndata: b\r\n\r\n", [11, 22]),
        (b"data: a\r\rdata: b\r\r", [9, 18]),
        (b"data: a\n\r\ndata: b\r\n\n", [10, 20]),
        (b"data: a\r\r\ndata: b\r\n\r", [10, 20]),
        (b"data: a\ndata: b\r\n", []),
    ],
)
def test_event_ends_with_each_kind_of_line_ending(stream: bytes, ends: list[int]) -> None:
    assert [len(p) for p in itertools.accumulate(split_events(stream))][: len(ends)] == ends
    assert last_event_end(stream) == (ends[-1] if ends else 0)


def test_a_framer_raises_past_its_bound_and_not_before() -> None:
    framer = EventFramer(max_event_bytes=64)
    assert framer.feed(b"data: " + b"x" * 50) == b""
    assert framer.feed(b"\n\n") == b"data: " + b"x" * 50 + b"\n\n"
    framer.feed(b"data: " + b"y" * 50)
    with pytest.raises(EventTooLarge):
        framer.feed(b"y" * 20)
