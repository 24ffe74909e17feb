"""Streams are forwarded chunk by chunk as they arrive, not buffered.

The fake upstream writes its first text delta and then waits on a gate.  If the
sidecar buffered the upstream response, the client would see nothing until the
gate opens; the SPEC says it must see the first chunk while the upstream is
still producing.  Also: an upstream that drops mid-stream does not break the
sidecar.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fakes.upstream import FakeUpstream

from .harness import Sidecar

FIRST_CHUNK_TIMEOUT = 5.0


async def assert_blocked(task: asyncio.Future[Any], what: str) -> None:
    """The next item must not arrive while the gate is closed."""
    await asyncio.sleep(0.2)
    assert not task.done(), f"{what}: the stream went on while the upstream was gated"


async def test_openai_chat_first_chunk_before_upstream_finishes(
    sidecar: Sidecar, fake: FakeUpstream
) -> None:
    fake.gate = asyncio.Event()
    stream = await sidecar.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "gated chat"}], stream=True
    )
    it = stream.__aiter__()
    text = ""
    async with asyncio.timeout(FIRST_CHUNK_TIMEOUT):
        while not text:
            chunk = await it.__anext__()
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
    assert not fake.gate.is_set()
    assert fake.streams_completed == 0
    assert text == fake.pieces("fake says: gated chat")[0]
    pending = asyncio.ensure_future(it.__anext__())
    await assert_blocked(pending, "chat")

    fake.gate.set()
    async with asyncio.timeout(5):
        chunk = await pending
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        async for chunk in it:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
    assert text == "fake says: gated chat"
    assert fake.streams_completed == 1


async def test_openai_responses_first_event_before_upstream_finishes(
    sidecar: Sidecar, fake: FakeUpstream
) -> None:
    fake.gate = asyncio.Event()
    stream = await sidecar.openai().responses.create(
        model="gpt-4o", input="gated responses", stream=True
    )
    it = stream.__aiter__()
    deltas = ""
    async with asyncio.timeout(FIRST_CHUNK_TIMEOUT):
        while not deltas:
            event = await it.__anext__()
            if event.type == "response.output_text.delta":
                deltas += event.delta
    assert not fake.gate.is_set()
    pending = asyncio.ensure_future(it.__anext__())
    await assert_blocked(pending, "responses")
    fake.gate.set()
    async with asyncio.timeout(5):
        event = await pending
        types = [event.type]
        if event.type == "response.output_text.delta":
            deltas += event.delta
        async for event in it:
            types.append(event.type)
            if event.type == "response.output_text.delta":
                deltas += event.delta
    assert deltas == "fake says: gated responses"
    assert types[-1] == "response.completed"


async def test_anthropic_first_delta_before_upstream_finishes(
    sidecar: Sidecar, fake_claude: FakeUpstream
) -> None:
    fake_claude.gate = asyncio.Event()
    async with sidecar.anthropic().messages.stream(
        model="claude-fake-1", max_tokens=32, messages=[{"role": "user", "content": "gated"}]
    ) as stream:
        texts = stream.text_stream.__aiter__()
        async with asyncio.timeout(FIRST_CHUNK_TIMEOUT):
            first = await texts.__anext__()
        assert first == fake_claude.pieces("claudefake says: gated")[0]
        assert not fake_claude.gate.is_set()
        pending = asyncio.ensure_future(texts.__anext__())
        await assert_blocked(pending, "anthropic")
        fake_claude.gate.set()
        async with asyncio.timeout(5):
            rest = [await pending] + [t async for t in texts]
        final = await stream.get_final_message()
    assert first + "".join(rest) == "claudefake says: gated"
    assert final.stop_reason == "end_turn"


async def test_slow_stream_delivers_chunks_progressively(
    sidecar: Sidecar, fake: FakeUpstream
) -> None:
    """With a per-chunk delay, the chunk arrival times must be spread out, not bunched."""
    fake.stream_chunks = 5
    fake.chunk_delay = 0.15
    loop = asyncio.get_running_loop()
    stream = await sidecar.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "slow and steady"}], stream=True
    )
    arrivals: list[float] = []
    text = ""
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(loop.time())
            text += chunk.choices[0].delta.content
    assert text == "fake says: slow and steady"
    assert len(arrivals) == 5
    assert arrivals[-1] - arrivals[0] > 0.4, f"chunks arrived bunched: {arrivals}"


async def test_upstream_drop_mid_stream_then_still_serving(
    sidecar: Sidecar, fake: FakeUpstream
) -> None:
    fake.abort_after_chunks = 1
    text = ""
    # The SDK may raise or just see the stream end; either is fine, faking success is not.
    with contextlib.suppress(Exception):
        stream = await sidecar.openai().chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "will be cut"}], stream=True
        )
        async with asyncio.timeout(10):
            async for chunk in stream:
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
    assert text != "fake says: will be cut"
    fake.abort_after_chunks = None
    ok = await sidecar.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "after drop"}]
    )
    assert ok.choices[0].message.content == "fake says: after drop"


async def test_client_disconnect_mid_stream_then_still_serving(
    sidecar: Sidecar, fake: FakeUpstream
) -> None:
    fake.gate = asyncio.Event()
    stream = await sidecar.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "i will hang up"}], stream=True
    )
    it = stream.__aiter__()
    async with asyncio.timeout(FIRST_CHUNK_TIMEOUT):
        await it.__anext__()
    await stream.close()  # the agent gives up while the upstream is still producing
    fake.gate.set()
    fake.gate = None
    ok = await sidecar.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "next caller"}]
    )
    assert ok.choices[0].message.content == "fake says: next caller"


async def test_long_stream_is_complete(sidecar: Sidecar, fake: FakeUpstream) -> None:
    """Hundreds of small SSE events (split across TCP reads) arrive complete and in order."""
    fake.stream_chunks = 400
    words = " ".join(f"w{i}" for i in range(600))
    stream = await sidecar.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": words}], stream=True
    )
    pieces: list[str] = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    assert len(pieces) == 400
    assert "".join(pieces) == f"fake says: {words}"
