"""Where a guard's scan should run: inline on the event loop, or on a worker thread.

Three tables, with the default bundle's guards (prompt injection and secrets on
input, PII on output):

1. Scan cost by text size, on prose and on phone-dense text (the PII guard's
   worst case): what an inline scan of that size stalls the loop for.
2. The cost of handing a scan to the worker pool and getting its result back,
   against the same scan inline: below the threshold the hand-over costs more
   than it saves.
3. The longest the event loop waits (a 1 ms timer's lateness) while a 1 MB
   phone-dense scan runs inline, on the worker pool, and on a process pool: the
   detectors are `re` and Python, which hold the GIL, so a thread helps only
   because the interpreter hands the GIL back every switch interval.

    .venv/bin/python bench/guard_offload_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor, ProcessPoolExecutor
from functools import partial
from typing import Any

from sidecar.guards import offload
from sidecar.guards.config import Guard, compile_guards

GUARDS: dict[str, Any] = {
    "input": [
        {"id": "prompt-injection", "kind": "prompt_injection", "action": "block"},
        {"id": "secrets-in-prompt", "kind": "secrets", "action": "block"},
    ],
    "output": [{"id": "pii-in-reply", "kind": "pii", "action": "redact"}],
}
PROSE = (
    "Please summarize the quarterly report for the operations team. Focus on the shipping "
    "delays in the northern region, the new supplier contracts and what they mean for next "
    "quarter's budget. Keep it under three paragraphs and use plain language. "
)
PHONES = "call 415-555-0199 or (212) 555-0143 now. "
SIZES = (1_024, 4_096, 16_384, 65_536)


def _text(unit: str, n: int) -> str:
    return (unit * (n // len(unit) + 1))[:n]


def _guards() -> list[Guard]:
    gs, problems = compile_guards(GUARDS, b"bench")
    assert not problems, problems
    return [*gs.input, *gs.output]


def _median_us(fn: Callable[[], object], runs: int) -> float:
    fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(samples)


def scan_costs(guards: list[Guard], runs: int) -> list[tuple[str, list[float]]]:
    rows = []
    for name, unit in (("prose", PROSE), ("phone-dense", PHONES)):
        for guard in guards:
            assert guard.detector is not None
            costs = [
                _median_us(
                    partial(guard.detector.scan, _text(unit, n)), max(5, runs // (n // 1024))
                )
                for n in SIZES
            ]
            rows.append((f"{guard.id}, {name}", costs))
    return rows


def _await(
    loop: asyncio.AbstractEventLoop, make: Callable[[], Coroutine[Any, Any, object]]
) -> object:
    return loop.run_until_complete(make())


async def _inline(scan: Callable[[str], object], text: str) -> object:
    return scan(text)


async def _on_worker(scan: Callable[[str], object], text: str) -> object:
    return await asyncio.get_running_loop().run_in_executor(offload._executor(), scan, text)


def handover(guards: list[Guard], runs: int) -> list[tuple[str, float, float]]:
    """The same scan awaited inline and through the worker pool, per call (µs)."""
    loop = asyncio.new_event_loop()
    rows = []
    pii = guards[-1]
    assert pii.detector is not None
    scan = pii.detector.scan
    for n in (256, 4_096):
        text = _text(PROSE, n)
        a = _median_us(partial(_await, loop, partial(_inline, scan, text)), runs)
        b = _median_us(partial(_await, loop, partial(_on_worker, scan, text)), runs)
        rows.append((f"{pii.id}, {n:,} characters of prose", a, b))
    loop.close()
    return rows


def _scan_pii(text: str) -> int:
    return len(_guards()[-1].detector.scan(text))  # type: ignore[union-attr]


async def _lag(start: Callable[[], asyncio.Future[Any] | None]) -> tuple[float, float]:
    """The largest lateness of a 1 ms timer while the work runs, and the work's time (ms)."""
    t0 = time.perf_counter()
    fut = start()
    worst = 0.0
    while fut is not None and not fut.done():
        t = time.perf_counter()
        await asyncio.sleep(0.001)
        worst = max(worst, time.perf_counter() - t - 0.001)
    if fut is not None:
        await fut
    else:
        worst = time.perf_counter() - t0
    return worst * 1000, (time.perf_counter() - t0) * 1000


def loop_lag() -> list[tuple[str, float, float]]:
    text = _text(PHONES, 1_000_000)
    pii = _guards()[-1]
    assert pii.detector is not None
    scan = pii.detector.scan
    procs: Executor = ProcessPoolExecutor(max_workers=1)
    procs.submit(_scan_pii, "warm").result()
    rows = []

    async def run() -> None:
        loop = asyncio.get_running_loop()

        def inline() -> None:
            scan(text)

        def run_inline() -> None:
            inline()

        rows.append(("inline", *await _lag(run_inline)))
        rows.append(
            (
                f"worker threads ({offload.SCAN_WORKERS})",
                *await _lag(lambda: loop.run_in_executor(offload._executor(), scan, text)),
            )
        )
        rows.append(
            (
                "process pool (1), text pickled",
                *await _lag(lambda: loop.run_in_executor(procs, _scan_pii, text)),
            )
        )

    asyncio.run(run())
    procs.shutdown()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=200)
    args = p.parse_args()
    guards = _guards()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Python {sys.version.split()[0]}")
    print(f"switch interval {sys.getswitchinterval() * 1000:.0f} ms\n")
    print("| scan, median µs | " + " | ".join(f"{n:,} ch" for n in SIZES) + " |")
    print("|---|" + "---:|" * len(SIZES))
    for name, costs in scan_costs(guards, args.runs):
        print(f"| {name} | " + " | ".join(f"{c:,.0f}" for c in costs) + " |")
    print("\n| one scan, awaited | inline µs | worker µs |\n|---|---:|---:|")
    for name, a, b in handover(guards, args.runs):
        print(f"| {name} | {a:,.1f} | {b:,.1f} |")
    print("\n| 1 MB phone-dense PII scan | longest loop stall ms | scan ms |\n|---|---:|---:|")
    for name, worst, took in loop_lag():
        print(f"| {name} | {worst:,.1f} | {took:,.0f} |")


if __name__ == "__main__":
    main()
