"""What the guard stages cost per call, in process, with the default bundle's guards.

Measures the input stage (prompt injection + secrets, block) on prompts of
several sizes, the output stage on a plain reply (PII, redact), and the
streaming output filter per kilobyte of streamed text in 4-character deltas
(a token at a time), each as p50/p99 over many runs. No network: this is the
guards' own CPU, the part the proxy adds on top of the forward path.

    .venv/bin/python bench/guard_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

from sidecar.call import Text
from sidecar.guards.config import compile_guards
from sidecar.guards.stage import OutputFilter, Record, Subject, check_input, check_output

GUARDS: dict[str, Any] = {
    "input": [
        {"id": "prompt-injection", "kind": "prompt_injection", "action": "block"},
        {"id": "secrets-in-prompt", "kind": "secrets", "action": "block"},
    ],
    "output": [{"id": "pii-in-reply", "kind": "pii", "action": "redact"}],
}
SUBJECT = Subject("bench", "default", "gpt-4o", frozenset({"agent"}))
PROSE = (
    "Please summarize the quarterly report for the operations team. Focus on the shipping "
    "delays in the northern region, the new supplier contracts and what they mean for next "
    "quarter's budget. Keep it under three paragraphs and use plain language. "
)
REPLY = (
    "The northern region saw delays of four to six days, mostly at the Hamburg port; "
    "contact ops.lead@example.com or call (415) 555-2671 for the carrier list. "
)


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99


def _time(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    for _ in range(min(200, runs)):
        fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e6)
    return _percentiles(samples)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=2000)
    args = p.parse_args()
    gs, problems = compile_guards(GUARDS, b"bench")
    assert not problems, problems
    loop = asyncio.new_event_loop()
    rows: list[tuple[str, float, float]] = []

    for size in (200, 2_000, 20_000):
        prompt = (PROSE * (size // len(PROSE) + 1))[:size]

        def run_input(prompt: str = prompt) -> None:
            holder = {"content": prompt}
            texts = [Text("user", prompt, holder, "content")]
            loop.run_until_complete(check_input(gs, texts, SUBJECT, Record()))

        p50, p99 = _time(run_input, args.runs if size < 20_000 else args.runs // 10)
        rows.append((f"input stage, {size:,} character prompt", p50, p99))

    def run_output() -> None:
        message = {"content": REPLY * 4}
        texts = [Text("assistant", message["content"], message, "content")]
        loop.run_until_complete(check_output(gs, texts, [], SUBJECT, Record()))

    p50, p99 = _time(run_output, args.runs)
    rows.append((f"output stage, plain reply of {len(REPLY) * 4} characters with PII", p50, p99))

    stream_text = (REPLY * 7)[:1024]

    def run_stream() -> None:
        flt = OutputFilter(gs, SUBJECT, Record())
        for i in range(0, len(stream_text), 4):
            flt.feed("choice 0", stream_text[i : i + 4])
        flt.end("choice 0")

    p50, p99 = _time(run_stream, args.runs // 4)
    rows.append(("streamed output, 1 KB in 4-character deltas (whole stream)", p50, p99))
    loop.close()

    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.runs} runs\n")
    print("| measurement | p50 (µs) | p99 (µs) |")
    print("|---|---:|---:|")
    for name, p50, p99 in rows:
        print(f"| {name} | {p50:,.1f} | {p99:,.1f} |")


if __name__ == "__main__":
    main()
