"""The SSE parser must give the same events however the bytes are split."""

from __future__ import annotations

import itertools

import pytest

from sidecar.adapters.sse import Event, SSEParser

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
