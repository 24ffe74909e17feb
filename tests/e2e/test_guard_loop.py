"""A large guarded request never stalls the calls beside it.

A guard's scan of a big body is CPU work: on the event loop it would freeze
every stream, call and probe the sidecar serves until it ends. Here a real
sidecar with the default bundle's guards takes a 10 MB request (prose with
phone numbers, the PII guard's slowest input) while small calls are issued
every 20 ms; their median latency may grow by at most 50 ms over the same
calls without it. The median, not the best: a call issued just before a stall
ends would look fast.

The default bundle's guards read at most their `scan_limit` (1 MiB) and
refuse a bigger body before reading it; here they are told to read all of it,
so the whole 10 MB is scanned (on a worker, a few kilobytes at most inline).
The default's refusal is its own test.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from .harness import AGENT_KEY, DEFAULT_BUNDLE_FILE, SidecarLauncher, write_bundle

PROSE = (
    "Please summarize the quarterly report for the operations team, the shipping delays in "
    "the northern region and what the new supplier contracts mean for next quarter. "
)
BIG_CHARS = 10_000_000
UNIT = PROSE * 3 + "Call (415) 555-2671 about it. "
BIG = orjson.dumps(
    {
        "model": "mock-echo",
        "messages": [
            {"role": "user", "content": (UNIT * (BIG_CHARS // len(UNIT) + 1))[:BIG_CHARS]}
        ],
    }
)
SMALL = orjson.dumps({"model": "mock-echo", "messages": [{"role": "user", "content": "hello"}]})
HEADERS = {"authorization": f"Bearer {AGENT_KEY}", "content-type": "application/json"}
CADENCE = 0.02
ALLOWED_DELAY = 0.05


def default_guards_reading_everything() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(DEFAULT_BUNDLE_FILE.read_text())
    for guards in doc["guards"].values():
        for guard in guards:
            guard["scan_limit"] = 16 * 1024 * 1024
    return doc


async def small_call(http: aiohttp.ClientSession, url: str) -> float:
    start = time.perf_counter()
    async with http.post(url, data=SMALL, headers=HEADERS) as resp:
        await resp.read()
        assert resp.status == 200, resp.status
    return time.perf_counter() - start


async def latencies(
    http: aiohttp.ClientSession, url: str, until: asyncio.Future[Any]
) -> list[float]:
    """Small calls issued every CADENCE seconds until `until` is done."""
    calls: list[asyncio.Task[float]] = []
    while not until.done():
        calls.append(asyncio.create_task(small_call(http, url)))
        await asyncio.sleep(CADENCE)
    return list(await asyncio.gather(*calls))


async def big_call(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with http.post(url, data=BIG, headers=HEADERS) as resp:
        return resp.status, await resp.read()


async def test_a_10mb_guarded_request_does_not_delay_a_small_call(
    launch: SidecarLauncher, tmp_path: Path
) -> None:
    sc = await launch(write_bundle(tmp_path / "bundle", default_guards_reading_everything()))
    url = sc.openai_base + "/chat/completions"
    async with aiohttp.ClientSession() as http:
        for _ in range(5):  # warm: connections, first-call imports
            await small_call(http, url)
        quiet = await latencies(http, url, asyncio.ensure_future(asyncio.sleep(0.5)))
        big = asyncio.ensure_future(big_call(http, url))
        busy = await latencies(http, url, big)
        status, body = big.result()
    assert len(busy) >= 10, "the big call ended before small calls could be issued beside it"
    delay = statistics.median(busy) - statistics.median(quiet)
    assert delay <= ALLOWED_DELAY, (
        f"small calls took {statistics.median(busy) * 1000:.1f} ms (median of {len(busy)}) "
        f"beside the big one, {statistics.median(quiet) * 1000:.1f} ms without"
    )
    assert status == 200, body[:300]
    assert b"[PHONE]" in body, "the reply was scanned (and redacted) all the way"


async def test_the_default_bundle_refuses_a_body_past_its_guards_scan_limit(
    launch: SidecarLauncher,
) -> None:
    sc = await launch(None)
    async with aiohttp.ClientSession() as http:
        status, body = await big_call(http, sc.openai_base + "/chat/completions")
        await small_call(http, sc.openai_base + "/chat/completions")  # still serving
    assert status == 400, body[:300]
    error = orjson.loads(body)["error"]
    assert error["code"] == "guard_blocked"
    assert "scan_limit" in error["message"] and "555" not in error["message"]
