"""A guarded stream's events that no stage changed reach the caller as the upstream sent them.

The response stages read events the adapter decoded, and the adapter encodes
again only the events a stage changed: comments, `id:` lines and CRLF line
ends of the others survive the tool gate and the output guards.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from fakes.upstream import FakeUpstream
from integration.conftest import MakeSidecar, openai_bundle


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return json.dumps(chunk).encode()


KEEP_ALIVE = b": keep-alive\n\n"
OPENING = b"id: 1\r\ndata: " + _chunk({"role": "assistant", "content": ""}) + b"\r\n\r\n"
DONE = b"data: [DONE]\n\n"


async def test_unchanged_events_of_a_guarded_stream_keep_their_bytes(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    doc = openai_bundle(fake)
    pattern = {"type": "EMPLOYEE_ID", "regex": r"\bE-\d{6}\b", "max_length": 8}
    doc["guards"] = {
        "output": [{"id": "ids", "kind": "pattern", "action": "redact", "patterns": [pattern]}]
    }
    sc = await make_sidecar(doc)

    async def source() -> AsyncIterator[bytes]:
        yield KEEP_ALIVE + OPENING
        yield b"data: " + _chunk({"content": "nothing to see here"}) + b"\n\n"
        yield b"data: " + _chunk({}, "stop") + b"\n\n" + DONE

    fake.raw_stream = source
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{sc.base}/v1/chat/completions",
            json={
                "model": "gpt-4o",
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": {"name": "search"}}],
            },
        )
        assert resp.status == 200
        body = await resp.read()
    assert body.startswith(KEEP_ALIVE + OPENING)  # byte for byte: comment, id line, CRLF
    assert body.endswith(DONE)
    texts = [
        json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
        for line in body.split(b"\n")
        if line.startswith(b"data: {")
    ]
    assert "".join(texts) == "nothing to see here"
