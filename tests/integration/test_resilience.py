"""Deadlines, retries, breakers, fallbacks and hedging, under faults a real fake upstream injects.

Callers are the official `openai` SDK (with its own retries off, so what is seen is
the sidecar's doing); upstreams are `FakeUpstream`s that answer late, fail in
bursts, reset connections, or stall streams.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from fakes.upstream import FakeUpstream
from integration.conftest import MakeSidecar, Running, openai_bundle

SLACK = 0.1  # no call may outlast its deadline by more than this


@pytest.fixture
async def backup() -> AsyncIterator[FakeUpstream]:
    upstream = FakeUpstream(name="backup")
    await upstream.start()
    yield upstream
    await upstream.stop()


def bundle(fake: FakeUpstream, **upstream: Any) -> dict[str, Any]:
    doc = openai_bundle(fake)
    doc["upstreams"]["fake"].update(upstream)
    return doc


def with_backup(doc: dict[str, Any], backup: FakeUpstream, **route: Any) -> dict[str, Any]:
    doc["upstreams"]["backup"] = {"base_url": backup.url, "api_key": {"env": "FAKE_UPSTREAM_KEY"}}
    gpt = next(r for r in doc["routes"] if r.get("name") == "gpt")
    gpt.setdefault("fallbacks", [{"upstream": "backup"}])
    gpt.update(route)
    return doc


def client(sc: Running, **kw: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{sc.base}/v1", api_key="k", max_retries=0, timeout=20, **kw
    )


async def chat(c: openai.AsyncOpenAI, text: str = "hi", **kw: Any) -> Any:
    return await c.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": text}], **kw
    )


async def timed(coro: Any) -> tuple[Any, float]:
    started = time.monotonic()
    try:
        result = await coro
    except Exception as exc:
        result = exc
    return result, time.monotonic() - started


# --- deadlines ---------------------------------------------------------------------------


async def test_a_route_deadline_ends_a_slow_call_on_time(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    doc = openai_bundle(fake)
    next(r for r in doc["routes"] if r.get("name") == "gpt")["timeout_ms"] = 400
    sc = await make_sidecar(doc)
    fake.head_delay = 3.0
    async with client(sc) as c:
        err, elapsed = await timed(chat(c))
    assert isinstance(err, openai.APIStatusError) and err.status_code == 504
    assert "deadline" in str(err)
    assert 0.4 <= elapsed < 0.4 + SLACK
    await asyncio.sleep(0.1)
    assert fake.abandoned == 1  # the upstream request was given up, not left running


async def test_the_callers_own_deadline_tightens_the_budget(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(bundle(fake, timeouts={"total_ms": 5000}))
    fake.head_delay = 3.0
    async with client(sc, default_headers={"x-sidecar-timeout-ms": "300"}) as c:
        err, elapsed = await timed(chat(c))
    assert isinstance(err, openai.APIStatusError) and err.status_code == 504
    assert 0.3 <= elapsed < 0.3 + SLACK


async def test_retries_and_backoff_share_the_deadline(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    retry = {"attempts": 10, "on": [503], "backoff_ms": 100, "budget": {"min_retries": 100}}
    doc = bundle(fake, retry=retry, timeouts={"total_ms": 500})
    sc = await make_sidecar(doc)
    fake.fail_next(503, times=1000)
    async with client(sc) as c:
        err, elapsed = await timed(chat(c))
    assert isinstance(err, openai.APIStatusError)
    assert elapsed < 0.5 + SLACK
    assert 2 <= len(fake.requests) < 10


async def test_a_stream_that_stalls_ends_with_an_error_event_not_a_hang(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(bundle(fake, timeouts={"idle_ms": 300}))
    fake.gate = asyncio.Event()  # never set: the stream stalls after its first delta
    started = time.monotonic()
    async with client(sc) as c:
        stream = await c.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "go"}], stream=True
        )
        got = []
        with pytest.raises(openai.APIError, match="timed out while streaming"):
            async for chunk in stream:
                got.append(chunk)
    assert got  # the first delta came through before the stall
    assert time.monotonic() - started < 0.3 + 0.5


# --- retries -----------------------------------------------------------------------------


async def test_retries_ride_out_a_burst_of_failures(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    retry = {"attempts": 3, "on": [503, "reset"], "backoff_ms": 20}
    sc = await make_sidecar(bundle(fake, retry=retry))
    fake.fail_next(503, times=1)
    fake.reset_next(1)
    async with client(sc) as c:
        done = await chat(c)
    assert done.choices[0].message.content
    assert len(fake.requests) == 3
    attempts = [s for s in sc.finished() if s.name == "POST fake"]
    counts = [(s.attributes or {}).get("http.request.resend_count") for s in attempts]
    assert counts == [None, 1, 2]
    assert all((s.attributes or {})["sidecar.breaker.state"] == "closed" for s in attempts)


async def test_retry_after_is_honoured_and_x_should_retry_false_is_obeyed(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    retry = {"attempts": 2, "on": [429, 503], "backoff_ms": 1}
    sc = await make_sidecar(bundle(fake, retry=retry))
    fake.fail_next(429, headers={"retry-after-ms": "300"})
    async with client(sc) as c:
        _, elapsed = await timed(chat(c))
        assert elapsed >= 0.3
        assert len(fake.requests) == 2
        fake.fail_next(503, headers={"x-should-retry": "false"})
        with pytest.raises(openai.InternalServerError):
            await chat(c)
    assert len(fake.requests) == 3  # not retried


async def test_retries_stop_at_the_budget(fake: FakeUpstream, make_sidecar: MakeSidecar) -> None:
    retry = {
        "attempts": 3,
        "on": [503],
        "backoff_ms": 1,
        "budget": {"ratio": 0.0, "min_retries": 4, "window_s": 60},
    }
    lenient = {"consecutive_failures": 1000, "min_calls": 1000}  # keep the breaker out of it
    sc = await make_sidecar(bundle(fake, retry=retry, breaker=lenient))
    fake.fail_next(503, times=1000)
    async with client(sc) as c:
        results = await asyncio.gather(*(chat(c) for _ in range(20)), return_exceptions=True)
    assert all(isinstance(r, openai.InternalServerError) for r in results)
    assert len(fake.requests) == 20 + 4  # every call once, plus what the budget allowed


# --- circuit breaker ----------------------------------------------------------------------


async def breaker_state(sc: Running) -> dict[str, str]:
    async with aiohttp.ClientSession() as http, http.get(f"{sc.admin}/readyz") as resp:
        body: dict[str, Any] = await resp.json()
    breakers: dict[str, str] = body["breakers"]
    return breakers


async def test_the_breaker_opens_half_opens_and_closes(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    breaker = {"consecutive_failures": 3, "open_ms": 300, "probes": 1}
    sc = await make_sidecar(bundle(fake, retry={"attempts": 1}, breaker=breaker))
    fake.fail_next(500, times=3)
    async with client(sc) as c:
        for _ in range(3):
            with pytest.raises(openai.InternalServerError):
                await chat(c)
        assert (await breaker_state(sc))["fake"] == "open"
        err, elapsed = await timed(chat(c))
        assert isinstance(err, openai.InternalServerError) and err.status_code == 503
        assert "circuit breaker is open" in str(err)
        assert err.response.headers["retry-after"] == "1"
        assert elapsed < 0.1 and len(fake.requests) == 3  # failed at once, nothing sent
        await asyncio.sleep(0.35)
        assert (await breaker_state(sc))["fake"] == "half_open"  # the next call probes
        await chat(c)  # the probe: the upstream healed
        assert (await breaker_state(sc))["fake"] == "closed"
        await chat(c)
    assert len(fake.requests) == 5


async def test_an_open_breaker_fails_over_at_once(
    fake: FakeUpstream, backup: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    breaker = {"consecutive_failures": 2, "open_ms": 10_000}
    doc = with_backup(bundle(fake, retry={"attempts": 1}, breaker=breaker), backup)
    sc = await make_sidecar(doc)
    fake.fail_next(500, times=1000)
    async with client(sc) as c:
        for _ in range(6):
            raw = await c.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
            )
            assert raw.headers["x-sidecar-upstream"] == "backup"
    assert len(fake.requests) == 2  # after two failures the primary is no longer asked
    assert len(backup.requests) == 6


# --- fallbacks ----------------------------------------------------------------------------


async def test_fallback_serves_while_the_primary_is_down_with_a_model_rewrite(
    backup: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    dead = FakeUpstream(name="dead")
    await dead.start()
    await dead.stop()  # a port nothing listens on any more
    doc = with_backup(
        bundle(dead, retry={"attempts": 1}),
        backup,
        fallbacks=[{"upstream": "backup", "model": "my-gpt-4o-deployment"}],
    )
    sc = await make_sidecar(doc)
    async with client(sc) as c:
        raw = await c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
    assert raw.headers["x-sidecar-upstream"] == "backup"
    assert backup.last_request.json()["model"] == "my-gpt-4o-deployment"
    span = await sc.wait_for_span("chat gpt-4o")
    assert (span.attributes or {})["sidecar.upstream"] == "backup"


async def test_a_status_not_in_fallback_on_passes_through(
    fake: FakeUpstream, backup: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(with_backup(bundle(fake), backup, fallback_on=[503]))
    fake.fail_next(500)
    async with client(sc) as c:
        with pytest.raises(openai.InternalServerError) as caught:
            await chat(c)
    assert caught.value.status_code == 500
    assert not backup.requests
    fake.fail_next(503)
    async with client(sc) as c:
        await chat(c)
    assert len(backup.requests) == 1


# --- hedging ------------------------------------------------------------------------------


async def test_a_hedged_call_returns_the_faster_answer_and_cancels_the_other(
    fake: FakeUpstream, backup: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    doc = with_backup(bundle(fake), backup, idempotent=True, hedge={"after_ms": 100})
    sc = await make_sidecar(doc)
    fake.head_delay = 2.0
    async with client(sc) as c:
        started = time.monotonic()
        raw = await c.embeddings.with_raw_response.create(model="gpt-4o", input="hello")
        elapsed = time.monotonic() - started
    assert raw.headers["x-sidecar-upstream"] == "backup"
    assert 0.1 <= elapsed < 0.6
    for _ in range(100):
        if fake.abandoned:
            break
        await asyncio.sleep(0.02)
    assert fake.abandoned == 1  # the slow attempt was cancelled, not left running


async def test_no_hedge_when_the_primary_answers_in_time(
    fake: FakeUpstream, backup: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    doc = with_backup(bundle(fake), backup, idempotent=True, hedge={"after_ms": 500})
    sc = await make_sidecar(doc)
    async with client(sc) as c:
        raw = await c.embeddings.with_raw_response.create(model="gpt-4o", input="hello")
    assert raw.headers["x-sidecar-upstream"] == "fake"
    assert not backup.requests


@pytest.mark.parametrize(
    ("route", "problem"),
    [
        ({"hedge": {"after_ms": 5}, "fallbacks": [{"upstream": "claude"}]}, "idempotent"),
        ({"hedge": {"after_ms": 5}, "idempotent": True}, "needs a fallback"),
        ({"fallbacks": [{"upstream": "nope"}]}, "unknown upstream 'nope'"),
    ],
)
async def test_invalid_resilience_settings_are_refused(
    fake: FakeUpstream, make_sidecar: MakeSidecar, route: dict[str, Any], problem: str
) -> None:
    sc = await make_sidecar(openai_bundle(fake))
    doc = openai_bundle(fake)
    next(r for r in doc["routes"] if r.get("name") == "gpt").update(route)
    sc.write_bundle(doc)
    assert await sc.sidecar.reload("test") == "error"
    assert problem in "\n".join((sc.sidecar.store.last_error or {}).get("problems", []))
