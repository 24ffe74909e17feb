"""Limits on a real redis-server: shared state, and each failure mode when Redis goes away."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from fakes.redis_server import RedisServer
from fakes.upstream import FakeUpstream
from integration.conftest import MakeSidecar, Running, openai_bundle

TIMEOUT_MS = 300


@pytest.fixture
async def redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path)
    await server.start()
    yield server
    if server.proc is not None:
        server.resume()
    await server.stop()


def redis_bundle(
    fake: FakeUpstream, redis: RedisServer, monkeypatch: pytest.MonkeyPatch, **rule: Any
) -> dict[str, Any]:
    monkeypatch.setenv("TEST_REDIS_URL", redis.url)
    doc = openai_bundle(fake)
    doc["redis"] = {"url": {"env": "TEST_REDIS_URL"}, "timeout_ms": TIMEOUT_MS}
    doc["limits"] = [{"id": "shared", "store": "redis", "key": ["tenant"], **rule}]
    return doc


def client(sc: Running) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key="k", max_retries=0, timeout=10)


async def chat(c: openai.AsyncOpenAI) -> Any:
    return await c.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )


async def outcomes(sc: Running, n: int) -> tuple[int, list[BaseException], float]:
    """(admitted, errors, slowest call in seconds) for n concurrent calls."""
    slowest = 0.0

    async def timed(c: openai.AsyncOpenAI) -> Any:
        nonlocal slowest
        started = time.monotonic()
        try:
            return await chat(c)
        finally:
            slowest = max(slowest, time.monotonic() - started)

    async with client(sc) as c:
        results = await asyncio.gather(*(timed(c) for _ in range(n)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    return n - len(errors), errors, slowest


async def test_two_sidecars_on_one_redis_admit_exactly_the_limit(
    fake: FakeUpstream,
    make_sidecar: MakeSidecar,
    redis: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc = redis_bundle(
        fake, redis, monkeypatch, requests={"limit": 30, "per": "1h"}, on_store_error="closed"
    )
    # Both sidecars, their callers and the upstream share one event loop here: give
    # Redis time to answer under that load (a store error would be a 503, not a pass).
    doc["redis"]["timeout_ms"] = 2000
    a, b = await make_sidecar(doc), await make_sidecar(doc)
    (got_a, err_a, _), (got_b, err_b, _) = await asyncio.gather(outcomes(a, 40), outcomes(b, 40))
    assert got_a + got_b == 30
    assert all(isinstance(e, openai.RateLimitError) for e in err_a + err_b)


@pytest.mark.parametrize("how", ["killed", "hung"])
async def test_fail_open(
    fake: FakeUpstream,
    make_sidecar: MakeSidecar,
    redis: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    doc = redis_bundle(
        fake, redis, monkeypatch, requests={"limit": 3, "per": "1h"}, on_store_error="open"
    )
    sc = await make_sidecar(doc)
    admitted, _, _ = await outcomes(sc, 5)
    assert admitted == 3
    await (redis.stop() if how == "killed" else asyncio.to_thread(redis.pause))
    admitted, errors, slowest = await outcomes(sc, 10)
    assert admitted == 10, errors  # open: everything passes while Redis is away
    assert slowest < TIMEOUT_MS / 1000 + 0.5


async def test_fail_closed_then_recovers(
    fake: FakeUpstream,
    make_sidecar: MakeSidecar,
    redis: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc = redis_bundle(
        fake, redis, monkeypatch, requests={"limit": 3, "per": "1h"}, on_store_error="closed"
    )
    sc = await make_sidecar(doc)
    redis.pause()  # hung: every command would wait forever without the timeout
    admitted, errors, slowest = await outcomes(sc, 6)
    assert admitted == 0
    assert all(isinstance(e, openai.InternalServerError) for e in errors)
    assert "cannot be checked" in str(errors[0]) and "on_store_error: closed" in str(errors[0])
    assert slowest < TIMEOUT_MS / 1000 + 0.5
    redis.resume()
    await asyncio.sleep(1.1)  # the store is asked again after its back-off
    admitted, errors, _ = await outcomes(sc, 5)
    assert admitted == 3  # enforced again, from the state Redis kept
    assert all(isinstance(e, openai.RateLimitError) for e in errors)


async def test_fall_back_to_local_limits_and_back(
    fake: FakeUpstream,
    make_sidecar: MakeSidecar,
    redis: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc = redis_bundle(
        fake, redis, monkeypatch, requests={"limit": 4, "per": "1h"}, on_store_error="local"
    )
    sc = await make_sidecar(doc)
    assert (await outcomes(sc, 2))[0] == 2
    await redis.stop()
    admitted, errors, slowest = await outcomes(sc, 8)
    assert admitted == 4  # the same rule, counted in this sidecar's memory
    assert all(isinstance(e, openai.RateLimitError) for e in errors)
    assert slowest < TIMEOUT_MS / 1000 + 0.5
    log = sc.finished("limits.check")[-1]
    assert log.attributes is not None and "sidecar.limit.store_error" in log.attributes
    await redis.start()  # a fresh, empty Redis on the same port
    await asyncio.sleep(1.1)
    admitted, _, _ = await outcomes(sc, 6)
    assert admitted == 4  # Redis counts again (from zero: it lost its state)


async def test_token_budget_on_redis_settles_to_the_reported_usage(
    fake: FakeUpstream,
    make_sidecar: MakeSidecar,
    redis: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import redis.asyncio as aioredis

    doc = redis_bundle(fake, redis, monkeypatch, tokens={"limit": 100_000, "per": "day"})
    sc = await make_sidecar(doc)
    async with client(sc) as c:
        for _ in range(3):
            stream = await c.chat.completions.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": "a short story please"}],
                stream=True,
            )
            async for _chunk in stream:
                pass
    await asyncio.sleep(0.2)
    r = aioredis.Redis.from_url(redis.url)
    try:
        keys = [k async for k in r.scan_iter("sidecar:*tok*")]
        assert len(keys) == 1 and b"{shared|tenant=default}" in keys[0]
        raw = await r.get(keys[0])
        assert raw is not None
        used = float(raw)
        ttl = await r.ttl(keys[0])
    finally:
        await r.aclose()
    calls = fake.requests_to("/v1/chat/completions")
    assert len(calls) == 3
    from fakes.upstream import _count_tokens, _last_user_text, _words

    reported = sum(
        _count_tokens(q.json()["messages"])
        + _words(fake.reply_for(_last_user_text(q.json()["messages"])))
        for q in calls
    )
    assert used == reported
    assert 0 < ttl <= 86400 + 60


async def test_a_redis_cluster_holds_limits_whose_keys_live_in_different_slots(
    fake: FakeUpstream,
    make_sidecar: MakeSidecar,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fakes.redis_server import RedisClusterNodes

    cluster = RedisClusterNodes(tmp_path)
    await cluster.start()
    try:
        monkeypatch.setenv("TEST_REDIS_URL", cluster.url)
        doc = openai_bundle(fake)
        doc["redis"] = {"url": {"env": "TEST_REDIS_URL"}, "timeout_ms": 500, "cluster": True}
        closed = {"store": "redis", "on_store_error": "closed"}  # a store error fails
        doc["limits"] = [
            # Two rules whose keys hash to different slots: one call runs two scripts.
            {"id": "wide", **closed, "requests": {"limit": 14, "per": "1h"}},
            {"id": "narrow", **closed, "key": ["tenant"], "requests": {"limit": 5, "per": "1h"}},
        ]
        a, b = await make_sidecar(doc), await make_sidecar(doc)
        assert (await outcomes(a, 1))[0] == 1  # the cluster client learns the slots
        assert (await outcomes(b, 1))[0] == 1
        (got_a, err_a, _), (got_b, err_b, _) = await asyncio.gather(outcomes(a, 6), outcomes(b, 6))
        assert got_a + got_b == 3
        assert all(isinstance(e, openai.RateLimitError) for e in err_a + err_b)
        assert all("limit 'narrow'" in str(e) for e in err_a + err_b)
        doc["limits"][1]["requests"]["limit"] = 100  # now only 'wide' can refuse
        doc["revision"] = "r2"
        a.write_bundle(doc)
        assert await a.sidecar.reload("test") == "success"
        got, errors, _ = await outcomes(a, 12)
        assert got == 14 - 5  # 'wide' counted the 5 admitted calls; refusals were rolled back
        assert all("limit 'wide'" in str(e) for e in errors)
    finally:
        await cluster.stop()


async def test_a_settlement_during_the_back_off_is_applied_later_not_lost(
    fake: FakeUpstream,
    make_sidecar: MakeSidecar,
    redis: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A one-second blip must not leave a concurrency lease behind for 15 minutes."""
    doc = redis_bundle(fake, redis, monkeypatch, concurrent=1, on_store_error="open")
    sc = await make_sidecar(doc)
    fake.gate = asyncio.Event()
    async with client(sc) as c:
        stream = await c.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hold"}], stream=True
        )
        await stream.__anext__()  # the stream holds the one lease, in Redis
        redis.pause()
        await chat(c)  # its check times out: the store backs off for a second (admitted: open)
        redis.resume()
        fake.gate.set()
        async for _ in stream:
            pass  # the stream ends inside the back-off: its release cannot be sent now
        await asyncio.sleep(1.5)  # past the back-off; the deferred release has gone out
        await chat(c)  # Redis is asked again, and the lease is free (else: RateLimitError)
