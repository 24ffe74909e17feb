"""Rate limits and budgets in one sidecar, driven by the real SDKs against a real fake upstream."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from fakes.upstream import FakeUpstream
from integration.conftest import MakeSidecar, Running, openai_bundle


def limited(fake: FakeUpstream, *limits: dict[str, Any], **extra: Any) -> dict[str, Any]:
    doc = openai_bundle(fake)
    doc["limits"] = list(limits)
    doc.update(extra)
    return doc


def client(sc: Running, *, retries: int = 0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{sc.base}/v1", api_key="agent-key", max_retries=retries, timeout=20
    )


async def chat(c: openai.AsyncOpenAI, text: str = "hi", **kw: Any) -> Any:
    return await c.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": text}], **kw
    )


async def test_200_concurrent_calls_against_a_limit_of_50_admit_exactly_50(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    rule = {"id": "burst", "key": ["tenant"], "requests": {"limit": 50, "per": "1h"}}
    sc = await make_sidecar(limited(fake, rule))
    async with client(sc) as c:
        results = await asyncio.gather(*(chat(c) for _ in range(200)), return_exceptions=True)
    admitted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert len(admitted) == 50
    assert len(refused) == 150
    assert len(fake.requests_to("/v1/chat/completions")) == 50
    message = str(refused[0])
    assert "limit 'burst' allows 50 requests per hour for tenant=default" in message
    assert refused[0].response.headers["x-ratelimit-remaining-requests"] == "0"
    assert int(refused[0].response.headers["retry-after"]) >= 1


async def test_every_response_carries_the_providers_rate_limit_headers(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    rules = (
        {"id": "loose", "requests": {"limit": 1000, "per": "1m"}},
        {"id": "tight", "key": ["tenant"], "requests": {"limit": 10, "per": "1m"}},
        {"id": "tok", "tokens": {"limit": 5000, "per": "1m"}},
    )
    sc = await make_sidecar(limited(fake, *rules))
    async with client(sc) as c:
        raw = await c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hello"}], max_tokens=50
        )
    h = raw.headers
    assert h["x-ratelimit-limit-requests"] == "10"  # the tightest rule, not the loosest
    assert h["x-ratelimit-remaining-requests"] == "9"
    assert h["x-ratelimit-reset-requests"].endswith("s")
    assert h["x-ratelimit-limit-tokens"] == "5000"
    assert 4900 < int(h["x-ratelimit-remaining-tokens"]) < 5000
    async with anthropic.AsyncAnthropic(base_url=sc.base, api_key="agent-key", max_retries=0) as ac:
        araw = await ac.messages.with_raw_response.create(
            model="claude-x", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
        )
    ah = araw.headers
    assert ah["anthropic-ratelimit-requests-limit"] == "10"
    assert ah["anthropic-ratelimit-requests-remaining"] == "8"
    assert ah["anthropic-ratelimit-requests-reset"].endswith("Z")
    assert ah["anthropic-ratelimit-tokens-limit"] == "5000"
    assert "x-ratelimit-limit-requests" not in ah


async def test_the_sdk_retry_honours_our_retry_after(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    rule = {"id": "one-per-second", "requests": {"limit": 1, "per": "1s"}}
    sc = await make_sidecar(limited(fake, rule))
    async with client(sc) as c:
        await chat(c)
        with pytest.raises(openai.RateLimitError) as caught:
            await chat(c)
        wait_ms = int(caught.value.response.headers["retry-after-ms"])
        assert 0 < wait_ms <= 1000
    async with client(sc, retries=2) as c:
        await asyncio.sleep(1.0)
        await chat(c)  # spends the fresh capacity
        started = time.monotonic()
        await chat(c)  # refused once, then the SDK waits what we said and succeeds
        waited = time.monotonic() - started
    assert waited >= 0.5, waited
    assert len(fake.requests_to("/v1/chat/completions")) == 3


async def test_concurrent_streams_against_a_token_budget(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """Never more than budget + one reservation's error; settled spend = reported usage."""
    budget = 400
    rule = {"id": "tok", "tokens": {"limit": budget, "per": "day"}, "reserve_output_tokens": 40}
    sc = await make_sidecar(limited(fake, rule))
    fake.stream_chunks = 6
    fake.chunk_delay = 0.01

    async def one(i: int) -> int:
        async with client(sc) as c:
            stream = await c.chat.completions.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": f"tell me a story number {i}"}],
                stream=True,
            )
            chunks = [chunk async for chunk in stream]
        assert all(ch.usage is None for ch in chunks)  # the caller did not ask for usage
        return sum(len(ch.choices[0].delta.content or "") for ch in chunks if ch.choices)

    results = await asyncio.gather(*(one(i) for i in range(40)), return_exceptions=True)
    served = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert served and refused and len(served) + len(refused) == 40
    calls = fake.requests_to("/v1/chat/completions")
    assert all(r.json()["stream_options"] == {"include_usage": True} for r in calls)
    await asyncio.sleep(0.05)  # settlement runs in the loop turn after each stream ends
    reported = sum(_fake_usage(fake, r.json()) for r in calls)
    (used,) = [v for k, v in sc.sidecar.limit_stores.state().items() if "|tok|" in k]
    assert used == reported
    reservation = max(_estimate(r.json()) + 40 for r in calls)
    assert reported <= budget + reservation


async def test_a_caller_that_asked_for_usage_still_gets_it(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    rule = {"id": "tok", "tokens": {"limit": 10_000, "per": "1h"}}
    sc = await make_sidecar(limited(fake, rule))
    async with client(sc) as c:
        stream = await c.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "count"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


async def test_a_stream_cut_short_is_settled_from_what_was_produced(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    rule = {"id": "tok", "tokens": {"limit": 100_000, "per": "day", "count": "output"}}
    sc = await make_sidecar(limited(fake, rule))
    fake.reply = "x" * 400
    fake.stream_chunks = 8
    fake.abort_after_chunks = 4  # the upstream drops the connection: no usage event
    async with client(sc) as c:
        stream = await c.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "go"}],
            stream=True,
            max_tokens=900,
        )
        got = ""
        with pytest.raises(openai.APIError):
            async for chunk in stream:
                if chunk.choices:
                    got += chunk.choices[0].delta.content or ""
    await asyncio.sleep(0.05)
    (used,) = [v for k, v in sc.sidecar.limit_stores.state().items() if "|tok|" in k]
    assert 0 < used < 900  # not the reservation: what was produced
    assert used == pytest.approx(len(got) / 4, abs=2)


async def test_concurrent_calls_limit(fake: FakeUpstream, make_sidecar: MakeSidecar) -> None:
    """Streams hold their lease until they end; then the next call gets it."""
    rule = {"id": "two-at-once", "concurrent": 2}
    sc = await make_sidecar(limited(fake, rule))
    fake.gate = asyncio.Event()  # streams wait after their first text chunk
    async with client(sc) as c:
        streams = [
            await c.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "slow"}], stream=True
            )
            for _ in range(2)
        ]
        for stream in streams:
            await stream.__anext__()
        with pytest.raises(openai.RateLimitError, match="at most 2 calls at once"):
            await chat(c)
        fake.gate.set()
        for stream in streams:
            async for _ in stream:
                pass
        await asyncio.sleep(0.02)
        await chat(c)  # the leases were released


async def test_cost_budget_and_unpriced_models(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    rule = {
        "id": "dollars",
        "match": {"models": ["gpt-*"]},
        "cost": {"limit": 0.01, "per": "month"},
    }
    doc = limited(fake, rule, pricing={"gpt-4o": {"input": 2.5, "output": 10.0}})
    sc = await make_sidecar(doc)
    async with client(sc) as c:
        await chat(c, max_tokens=100)
        await asyncio.sleep(0.02)
        (spent,) = [v for k, v in sc.sidecar.limit_stores.state().items() if "|usd|" in k]
        usage = fake.requests[-1]
        assert spent == pytest.approx(_fake_usage_split(fake, usage.json()), rel=1e-6)
        with pytest.raises(openai.RateLimitError, match="can never pass"):
            await chat(c, max_tokens=2000)  # 2000 x $10/M = $0.02 > the whole budget
        with pytest.raises(openai.PermissionDeniedError, match="no price for model 'gpt-5'"):
            await c.chat.completions.create(
                model="gpt-5", messages=[{"role": "user", "content": "hi"}]
            )


async def test_limit_span_metrics_and_decision_log(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    rule = {"id": "r", "requests": {"limit": 1, "per": "1h"}}
    sc = await make_sidecar(limited(fake, rule))
    async with client(sc) as c:
        await chat(c)
        with pytest.raises(openai.RateLimitError):
            await chat(c)
    span = await sc.wait_for_span("limits.check")
    assert span.attributes is not None
    assert span.attributes["sidecar.limit.result"] == "rejected"
    async with aiohttp.ClientSession() as http, http.get(f"{sc.admin}/metrics") as resp:
        metrics = await resp.text()
    assert 'sidecar_limit_decisions_total{result="admitted",sidecar_limit_id="r"} 1.0' in metrics
    assert 'sidecar_limit_decisions_total{result="rejected",sidecar_limit_id="r"} 1.0' in metrics


async def test_limits_survive_a_bundle_reload(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    rule = {"id": "r", "requests": {"limit": 2, "per": "1h"}}
    sc = await make_sidecar(limited(fake, rule))
    async with client(sc) as c:
        await chat(c)
        await chat(c)
        doc = limited(fake, rule)
        doc["revision"] = "r2"
        sc.write_bundle(doc)
        assert await sc.sidecar.reload("test") == "success"
        with pytest.raises(openai.RateLimitError):
            await chat(c)


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ({"id": "x", "requests": {"limit": 5, "per": "day"}}, "limits[0].requests.per"),
        ({"id": "x", "tokens": {"limit": 5, "per": "fortnight"}}, "limits[0].tokens.per"),
        ({"id": "x"}, "limits[0]: a limit needs at least one of"),
        ({"id": "x", "concurrent": 1, "store": "redis"}, "limits[0].store"),
        ({"id": "x", "concurrent": 0}, "limits[0].concurrent"),
        ({"id": "x", "concurrent": 1, "key": ["tenant", "tenant"]}, "limits[0].key[1]"),
    ],
)
async def test_invalid_limits_are_refused_with_their_path(
    fake: FakeUpstream, make_sidecar: MakeSidecar, rule: dict[str, Any], problem: str
) -> None:
    sc = await make_sidecar(openai_bundle(fake))
    sc.write_bundle(limited(fake, rule))
    assert await sc.sidecar.reload("test") == "error"
    problems = "\n".join((sc.sidecar.store.last_error or {}).get("problems", []))
    assert problem in problems


def _estimate(body: dict[str, Any]) -> int:
    chars = sum(len(m["content"]) for m in body["messages"])
    return (chars + 3) // 4


def _fake_usage(fake: FakeUpstream, body: dict[str, Any]) -> int:
    from fakes.upstream import _count_tokens, _last_user_text, _words

    text = fake.reply_for(_last_user_text(body["messages"]))
    return int(_count_tokens(body["messages"]) + _words(text))


def _fake_usage_split(fake: FakeUpstream, body: dict[str, Any]) -> float:
    from fakes.upstream import _count_tokens, _last_user_text, _words

    text = fake.reply_for(_last_user_text(body["messages"]))
    return _count_tokens(body["messages"]) * 2.5e-6 + _words(text) * 10e-6


async def test_anthropic_streams_settle_from_their_usage_events(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    rule = {"id": "tok", "tokens": {"limit": 100_000, "per": "day"}}
    sc = await make_sidecar(limited(fake, rule))
    async with (
        anthropic.AsyncAnthropic(base_url=sc.base, api_key="agent-key", max_retries=0) as ac,
        ac.messages.stream(
            model="claude-x", max_tokens=500, messages=[{"role": "user", "content": "tell me"}]
        ) as stream,
    ):
        final = await stream.get_final_message()
    await asyncio.sleep(0.05)
    (used,) = [v for k, v in sc.sidecar.limit_stores.state().items() if "|tok|" in k]
    assert used == final.usage.input_tokens + final.usage.output_tokens
    assert "stream_options" not in fake.last_request.json()  # only OpenAI needs asking
