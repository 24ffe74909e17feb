"""Streams: chunks pass as they come; broken or abandoned streams end cleanly."""

from __future__ import annotations

import asyncio

import aiohttp
import anthropic
import openai
import pytest

from fakes.upstream import FakeUpstream
from integration.conftest import MakeSidecar, openai_bundle


async def test_upstream_drop_mid_stream_becomes_an_openai_error_event(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(openai_bundle(fake))
    fake.stream_chunks = 6
    fake.abort_after_chunks = 2
    client = openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key="agent", max_retries=0)
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "break please"}], stream=True
    )
    received: list[str] = []
    with pytest.raises(openai.APIError) as info:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert received, "chunks before the break must have reached the caller"
    assert "upstream 'fake' failed while streaming" in str(info.value)
    span = await sc.wait_for_span("chat gpt-4o")
    assert dict(span.attributes or {})["error.type"] == "bad_gateway"


async def test_upstream_drop_mid_stream_becomes_an_anthropic_error_event(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(openai_bundle(fake))
    fake.stream_chunks = 6
    fake.abort_after_chunks = 2
    client = anthropic.AsyncAnthropic(base_url=sc.base, api_key="agent", max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as info:
        async with client.messages.stream(
            model="claude-x", max_tokens=50, messages=[{"role": "user", "content": "break"}]
        ) as stream:
            async for _ in stream:
                pass
    assert "failed while streaming" in str(info.value)


async def test_agent_disconnect_ends_the_upstream_call_at_once(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(openai_bundle(fake))
    fake.gate = asyncio.Event()  # the upstream will hang after its first chunk
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{sc.base}/v1/chat/completions",
            json={
                "model": "gpt-4o",
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            },
        )
        first = await resp.content.readany()
        assert first.startswith(b"data: ")
        resp.close()  # the agent goes away mid-stream
    span = await sc.wait_for_span("chat gpt-4o")
    assert dict(span.attributes or {})["error.type"] == "cancelled"
    assert not fake.gate.is_set()  # ended while the upstream was still holding the stream
    fake.gate.set()


async def test_inflight_stream_survives_reload_and_old_session_closes_after(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    second = FakeUpstream(name="second", reply="second says hi")
    await second.start()
    try:
        sc = await make_sidecar(openai_bundle(fake, revision="old"))
        fake.gate = asyncio.Event()
        client = openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key="agent", max_retries=0)
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "long story"}], stream=True
        )
        iterator = stream.__aiter__()
        first = await iterator.__anext__()
        old_gen = sc.sidecar.store.active
        assert old_gen is not None and old_gen.inflight == 1

        sc.write_bundle(openai_bundle(second, revision="new"))
        assert await sc.sidecar.reload("test") == "success"
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "who?"}]
        )
        assert raw.headers["x-sidecar-bundle-revision"] == "new"
        assert raw.parse().choices[0].message.content == "second says hi"
        old_transport = old_gen.transports["fake"]
        assert old_gen.retired and old_gen.specs, "the old generation is held by the stream"

        fake.gate.set()
        text = (first.choices[0].delta.content or "") if first.choices else ""
        async for chunk in iterator:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
        assert text == fake.reply_for("long story")
        for _ in range(100):
            if old_gen.inflight == 0 and not old_gen.specs:
                break
            await asyncio.sleep(0.01)
        assert old_gen.inflight == 0 and old_gen.specs == []
        await asyncio.sleep(0.05)
        assert old_transport.closed  # type: ignore[attr-defined]
        # the mock and claude upstreams were unchanged and are still shared with the new generation
        new_gen = sc.sidecar.store.active
        assert new_gen is not None and new_gen.transports["mock"] is old_gen.transports["mock"]
    finally:
        await second.stop()
