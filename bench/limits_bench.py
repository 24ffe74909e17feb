"""Cost of the limit stage per call: in memory, and on a real redis-server.

Measures what the pipeline runs for a limited call — `Limiter.admit` (match
the rules, build the cells, check them) and `Limiter.settle` (charge the real
usage, release leases) — for a realistic rule set: a per-tenant request
limit with a token budget, a per-user concurrency cap and a per-tenant
monthly cost budget, over 50 tenants and 500 users. On Redis it also counts
the commands Redis ran (INFO commandstats), to show one script call — one
round trip — per check.

Run: .venv/bin/python bench/limits_bench.py [--calls N]
(the Redis rows need `redis-server` on PATH; they are skipped without it)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sidecar.adapters.openai import ADAPTER
from sidecar.call import Usage
from sidecar.identity.principal import Principal
from sidecar.limits.limiter import Limiter, LimitStores
from sidecar.limits.rules import LimitSet, compile_limits


def one_rule() -> LimitSet:
    """The common case: one per-tenant request limit."""
    doc = {"limits": [{"id": "rpm", "key": ["tenant"], "requests": {"limit": 1e9, "per": "1m"}}]}
    problems: list[Any] = []
    limits = compile_limits(doc, lambda where, ref: ("", None), problems)
    assert not problems, problems
    return limits


def rules(store: str, url: str = "") -> LimitSet:
    doc: dict[str, Any] = {
        "pricing": {"gpt-4o": {"input": 2.5, "output": 10.0}},
        "limits": [
            {
                "id": "tenant-rate",
                "key": ["tenant"],
                "requests": {"limit": 1e9, "per": "1m"},
                "tokens": {"limit": 1e12, "per": "1h"},
                "store": store,
            },
            {"id": "user-conc", "key": ["tenant", "user"], "concurrent": 1000, "store": store},
            {"id": "tenant-cost", "key": ["tenant"], "cost": {"limit": 1e9, "per": "month"}},
        ],
    }
    if url:
        doc["redis"] = {"url": {"env": "BENCH_REDIS_URL"}, "timeout_ms": 200}
    problems: list[Any] = []
    limits = compile_limits(doc, lambda where, ref: (url, None), problems)
    assert not problems, problems
    return limits


def principals() -> list[Principal]:
    return [
        Principal(
            id=f"user-{u}",
            tenant=f"tenant-{u % 50}",
            agent="agent",
            user=f"user-{u}",
            roles=frozenset({"agent"}),
            via="api_key",
        )
        for u in range(500)
    ]


async def measure(limits: LimitSet, calls: int) -> tuple[list[float], LimitStores]:
    stores = LimitStores()
    limiter = Limiter(stores, lambda *a: None, lambda *a: None, lambda *a: None)
    body = (
        b'{"model":"gpt-4o","max_tokens":200,"messages":[{"role":"user","content":"'
        + b"x" * 2000
        + b'"}]}'
    )
    people = principals()
    usage = Usage(input_tokens=500, output_tokens=120)
    times: list[float] = []
    for i in range(calls):
        call = ADAPTER.parse("/v1/chat/completions", body)
        call.token_estimate  # noqa: B018 - computed by the guards stage before limits run
        who = people[i % len(people)]
        started = time.perf_counter()
        adm = await limiter.admit(limits, call, who, "gpt", f"call-{i}")
        assert adm is not None
        limiter.settle(adm, usage, 200)
        times.append((time.perf_counter() - started) * 1e6)
    await stores.close()
    return times, stores


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def redis_rows(calls: int) -> list[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        return ["| redis | — | — | — | skipped: no redis-server on PATH |"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tempfile.mkdtemp()
    proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once
        [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis.asyncio as aioredis

        url = f"redis://127.0.0.1:{port}/0"
        admin = aioredis.Redis.from_url(url)
        for _ in range(200):
            try:
                await admin.ping()
                break
            except Exception:
                await asyncio.sleep(0.02)
        await measure(rules("redis", url), 200)  # warm: connections, script load
        await admin.config_resetstat()
        times, _ = await measure(rules("redis", url), calls)
        await asyncio.sleep(0.2)  # settlements run after each call
        stats = await admin.info("commandstats")
        await admin.aclose()
        scripts = sum(
            v["calls"] for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval")
        )
        per_call = scripts / calls
        return [
            f"| redis (2 of 3 rules) | {statistics.median(times):.0f} | {pct(times, 0.99):.0f} "
            f"| {per_call:.2f} | {per_call / 2:.2f} check + {per_call / 2:.2f} settle "
            "script calls per call |"
        ]
    finally:
        proc.kill()
        proc.wait()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    await measure(rules("memory"), 2000)  # warm up
    times, _ = await measure(rules("memory"), args.calls)
    await measure(one_rule(), 2000)
    single, _ = await measure(one_rule(), args.calls)
    machine = platform.processor() or platform.machine()
    print(
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC — {machine}, "
        f"Python {platform.python_version()}, {args.calls} calls, 500 users in 50 tenants"
    )
    print()
    print("| store | p50 µs | p99 µs | Redis scripts per call | notes |")
    print("|---|---:|---:|---:|---|")
    print(
        f"| memory (1 rule, 1 cell) | {statistics.median(single):.1f} | {pct(single, 0.99):.1f} "
        f"| — | a per-tenant request limit |"
    )
    print(
        f"| memory (3 rules, 5 cells) | {statistics.median(times):.1f} | {pct(times, 0.99):.1f} "
        f"| — | admit + settle; target ≤ 30 µs |"
    )
    for row in await redis_rows(min(args.calls, 5000)):
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
