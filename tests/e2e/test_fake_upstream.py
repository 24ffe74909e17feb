"""Keep the fake honest: the official SDKs, pointed straight at it, parse every reply.

If these fail, the e2e results against the sidecar mean nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import anthropic
import openai
import pytest

from fakes.upstream import FakeUpstream


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    upstream = FakeUpstream()
    await upstream.start()
    try:
        yield upstream
    finally:
        await upstream.stop()


def oai(fake: FakeUpstream) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{fake.url}/v1", api_key="direct-key", max_retries=0)


def ant(fake: FakeUpstream) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=fake.url, api_key="direct-key", max_retries=0)


async def test_openai_chat_plain_and_streamed(fake: FakeUpstream) -> None:
    client = oai(fake)
    done = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hello there"}]
    )
    assert done.choices[0].message.content == "fake says: hello there"
    assert done.model == "gpt-4o"
    assert done.usage is not None and done.usage.total_tokens > 0
    assert fake.last_request.headers["Authorization"] == "Bearer direct-key"

    stream = await client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "stream me"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text = ""
    usage_seen = False
    deltas = 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
            deltas += 1
        if chunk.usage is not None:
            usage_seen = True
            assert chunk.choices == []
    assert text == "fake says: stream me"
    assert deltas == fake.stream_chunks
    assert usage_seen
    assert fake.streams_completed == 1


async def test_openai_other_endpoints(fake: FakeUpstream) -> None:
    client = oai(fake)
    emb = await client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"])
    assert len(emb.data) == 2
    assert len(emb.data[0].embedding) == 8
    assert emb.data[0].embedding != emb.data[1].embedding
    assert fake.last_request.json()["encoding_format"] == "base64"

    comp = await client.completions.create(model="gpt-3.5-turbo-instruct", prompt="say hi")
    assert comp.choices[0].text == "fake says: say hi"

    resp = await client.responses.create(model="gpt-4o", input="respond please")
    assert resp.output_text == "fake says: respond please"
    assert resp.usage is not None and resp.usage.output_tokens > 0

    kinds: list[str] = []
    deltas = ""
    seqs: list[int] = []
    rstream = await client.responses.create(model="gpt-4o", input="respond stream", stream=True)
    async for event in rstream:
        kinds.append(event.type)
        seqs.append(event.sequence_number)
        if event.type == "response.output_text.delta":
            deltas += event.delta
        if event.type == "response.completed":
            assert event.response.output_text == "fake says: respond stream"
    assert deltas == "fake says: respond stream"
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert seqs == list(range(len(seqs)))

    # The SDK's high-level streaming helper accumulates the final response too.
    async with client.responses.stream(model="gpt-4o", input="helper") as helper:
        final = await helper.get_final_response()
    assert final.output_text == "fake says: helper"

    models = await client.models.list()
    assert [m.id for m in models.data] == fake.models


async def test_anthropic_messages(fake: FakeUpstream) -> None:
    client = ant(fake)
    msg = await client.messages.create(
        model="claude-fake-1",
        max_tokens=50,
        messages=[{"role": "user", "content": "hi claude"}],
    )
    assert msg.content[0].type == "text"
    assert msg.content[0].text == "fake says: hi claude"
    assert msg.usage.output_tokens > 0
    seen = fake.last_request.headers
    # anthropic SDK 2.x sends its api_key as a bearer token, not x-api-key.
    assert seen["Authorization"] == "Bearer direct-key"
    assert "anthropic-version" in seen

    async with client.messages.stream(
        model="claude-fake-1",
        max_tokens=50,
        messages=[{"role": "user", "content": "stream claude"}],
    ) as stream:
        pieces = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(pieces) == "fake says: stream claude"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0

    count = await client.messages.count_tokens(
        model="claude-fake-1", messages=[{"role": "user", "content": "one two three"}]
    )
    assert count.input_tokens == 6


async def test_gate_holds_stream_after_first_chunk(fake: FakeUpstream) -> None:
    fake.gate = asyncio.Event()
    client = oai(fake)
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "gated reply"}], stream=True
    )
    it = stream.__aiter__()
    text = ""
    while not text:
        chunk = await asyncio.wait_for(it.__anext__(), 5)
        text += chunk.choices[0].delta.content or ""
    assert fake.first_chunk_sent.is_set()
    nxt = asyncio.ensure_future(it.__anext__())
    await asyncio.sleep(0.2)
    assert not nxt.done(), "fake did not hold the stream at the gate"
    fake.gate.set()
    chunk = await asyncio.wait_for(nxt, 5)
    text += chunk.choices[0].delta.content or ""
    async for chunk in it:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
    assert text == "fake says: gated reply"


async def test_forced_errors_and_abort(fake: FakeUpstream) -> None:
    client = oai(fake)
    fake.fail_next(429, {"error": {"message": "slow down", "type": "rate", "code": "x"}})
    with pytest.raises(openai.RateLimitError) as rate:
        await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    assert "slow down" in str(rate.value)
    fake.fail_next(500)
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    fake.fail_next(529)
    with pytest.raises(anthropic.APIStatusError) as over:
        await ant(fake).messages.create(
            model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert over.value.status_code == 529
    ok = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "after"}]
    )
    assert ok.choices[0].message.content == "fake says: after"

    fake.abort_after_chunks = 1
    with pytest.raises((openai.APIConnectionError, openai.APIError)):
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "abort me"}], stream=True
        )
        async for _ in stream:
            pass
    assert fake.streams_completed == 0


async def test_records_raw_requests(fake: FakeUpstream) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{fake.url}/v1/chat/completions", data=b"{not json", headers={"X-Mine": "1"}
        ) as resp:
            assert resp.status == 400
            body = await resp.json()
            assert "error" in body
        async with session.get(f"{fake.url}/v1/v1/models") as resp:
            assert resp.status == 404
    assert fake.requests[0].body == b"{not json"
    assert fake.requests[0].headers["x-mine"] == "1"
    assert fake.requests[1].path == "/v1/v1/models"
    assert "X-Mine: 1" in fake.everything_seen()


async def test_compressed_replies(fake: FakeUpstream) -> None:
    fake.compress = True
    done = await oai(fake).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "zip"}]
    )
    assert done.choices[0].message.content == "fake says: zip"
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.post(
            f"{fake.url}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "zip"}]},
            headers={"Accept-Encoding": "gzip"},
        ) as resp,
    ):
        assert resp.headers.get("Content-Encoding") == "gzip"
