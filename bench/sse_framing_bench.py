"""What cutting a relayed stream at SSE event boundaries costs, per chunk.

Why: every streamed reply passes the framer once per chunk (whole events only
go out, so a cut-short stream still ends with an event the SDK can read), and
a gated or guarded one a second time. The framer now follows the event-stream
rules (CR, LF and CRLF line ends, mixed); this checks that it is no slower than
the LF-only finders it replaced, kept below as they were for comparison.

    .venv/bin/python bench/sse_framing_bench.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sidecar.adapters.sse import EventFramer


class _LfOnlyHeld:
    """The relay's finder before: LF and LF CRLF blank lines only, pieces joined once."""

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self.size = 0

    def feed(self, chunk: bytes) -> bytes:
        pieces = self._pieces
        if not pieces:
            end = _lf_event_end(chunk)
            if end < len(chunk):
                pieces.append(chunk[end:])
                self.size = len(chunk) - end
            return chunk[:end] if end < len(chunk) else chunk
        tail = pieces[-1][-2:]
        if len(tail) < 2 and len(pieces) > 1:
            tail = (pieces[-2] + tail)[-2:]
        end = _lf_event_end(tail + chunk) - len(tail)
        if end <= 0:
            pieces.append(chunk)
            self.size += len(chunk)
            return b""
        out = b"".join([*pieces, chunk[:end]])
        pieces.clear()
        self.size = len(chunk) - end
        if self.size:
            pieces.append(chunk[end:])
        return out


def _lf_event_end(chunk: bytes) -> int:
    lf = chunk.rfind(b"\n\n")
    crlf = chunk.rfind(b"\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 3 if crlf >= 0 else 0)


class _OldAligner:
    """The tool gate's aligner before: the held part joined with every new chunk."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk if self._pending else chunk
        cut = 0
        for boundary in (b"\n\n", b"\r\n\r\n", b"\r\r"):
            at = data.rfind(boundary)
            if at >= 0:
                cut = max(cut, at + len(boundary))
        if cut == 0:
            self._pending = data
            return b""
        self._pending = data[cut:]
        return data[:cut]


def _chat_event(i: int) -> bytes:
    payload = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {"content": f"token {i} "}, "finish_reason": None}],
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _workloads() -> list[tuple[str, list[bytes]]]:
    events = b"".join(_chat_event(i) for i in range(2000))
    one_per_chunk = [_chat_event(i) for i in range(2000)]
    cut_64 = [events[i : i + 64] for i in range(0, len(events), 64)]
    long_event = b"data: " + b"x" * (1 << 20) + b"\n\n"
    long_4k = [long_event[i : i + 4096] for i in range(0, len(long_event), 4096)]
    crlf = [event.replace(b"\n", b"\r\n") for event in one_per_chunk]
    return [
        ("2,000 chat events, one per chunk", one_per_chunk),
        ("the same with CRLF line ends", crlf),
        ("the same, cut every 64 bytes", cut_64),
        ("one 1 MiB event in 4 KiB chunks", long_4k),
    ]


def _time(make: Callable[[], object], chunks: list[bytes], rounds: int) -> float:
    """Best of `rounds`: microseconds per chunk."""
    best = float("inf")
    for _ in range(rounds):
        framer = make()
        feed = framer.feed  # type: ignore[attr-defined]
        start = time.perf_counter()
        for chunk in chunks:
            feed(chunk)
        best = min(best, time.perf_counter() - start)
    return best / len(chunks) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    rows: list[tuple[str, str, str, str]] = []
    for name, chunks in _workloads():
        new = _time(lambda: EventFramer(1 << 30), chunks, args.rounds)
        held = _time(_LfOnlyHeld, chunks, args.rounds)
        aligner = _time(_OldAligner, chunks, args.rounds)
        rows.append((name, f"{new:.2f}", f"{held:.2f}", f"{aligner:.2f}"))
    print("| µs per chunk | EventFramer | before: relay (LF only) | before: tool-gate aligner |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
