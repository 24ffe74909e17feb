"""Event streams whose lines end in CR, LF or CRLF, mixed, relay like any other.

The event-stream format lets a line end with any of the three and an event end
with a blank line; a relay that only knows LF holds a CR stream back to its end.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import openai

from fakes.upstream import FakeUpstream
from integration.conftest import MakeSidecar, openai_bundle


def _chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


def _event(payload: Any, end: str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}{end}{end}".encode()


async def test_a_cr_stream_passes_each_event_as_it_comes(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(openai_bundle(fake))
    more = asyncio.Event()

    async def source() -> AsyncIterator[bytes]:
        yield _event(_chunk({"role": "assistant", "content": "first"}), "\r")
        await more.wait()  # the model thinks: the first event must not wait for the next
        yield _event(_chunk({"content": " second"}, "stop"), "\r")
        yield _event("[DONE]", "\r")

    fake.raw_stream = source
    async with openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key="k", max_retries=0) as c:
        stream = await c.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        chunks = aiter(stream)
        first = await asyncio.wait_for(anext(chunks), 10)
        assert first.choices[0].delta.content == "first"
        more.set()
        rest = [chunk async for chunk in chunks]
    assert [ch.choices[0].delta.content for ch in rest] == [" second"]


async def test_the_usage_chunk_the_sidecar_asked_for_goes_alone_from_a_cr_stream(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    """Under a token limit the sidecar asks for usage; only that chunk is held back."""
    doc = openai_bundle(fake)
    doc["limits"] = [{"id": "tok", "tokens": {"limit": 100_000, "per": "1h"}}]
    sc = await make_sidecar(doc)
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}

    async def source() -> AsyncIterator[bytes]:
        # The end of a stream in one piece, as upstreams often send it.
        yield b"".join(
            [
                _event(_chunk({"role": "assistant", "content": "all"}), "\r"),
                _event(_chunk({"content": " done"}, "stop"), "\r"),
                _event({**_chunk({}), "choices": [], "usage": usage}, "\r"),
                _event("[DONE]", "\r"),
            ]
        )

    fake.raw_stream = source
    async with openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key="k", max_retries=0) as c:
        stream = await c.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        chunks = [chunk async for chunk in stream]
    assert fake.last_request.json()["stream_options"] == {"include_usage": True}
    assert [ch.choices[0].delta.content for ch in chunks] == ["all", " done"]
    assert all(ch.usage is None for ch in chunks)


async def test_an_output_guard_redacts_a_cr_stream_across_its_events(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    doc = openai_bundle(fake)
    pattern = {"type": "EMPLOYEE_ID", "regex": r"\bE-\d{6}\b", "max_length": 8}
    doc["guards"] = {
        "output": [{"id": "ids", "kind": "pattern", "action": "redact", "patterns": [pattern]}]
    }
    sc = await make_sidecar(doc)

    async def source() -> AsyncIterator[bytes]:
        for piece in ("ask E-12", "3456 about", " it"):
            yield _event(_chunk({"content": piece}), "\r")
        yield _event(_chunk({}, "stop"), "\r") + _event("[DONE]", "\r")

    fake.raw_stream = source
    async with openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key="k", max_retries=0) as c:
        stream = await c.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join([ch.choices[0].delta.content or "" async for ch in stream if ch.choices])
    assert text == "ask [EMPLOYEE_ID] about it"
