"""Guards name models and tools the way every other rule does: without regard to case.

A guard scoped to `GPT-4o*` applies to a call for `gpt-4o`, and a tool guard
written for `Fetch` reads the arguments of a call to `fetch` (see docs/bundle.md,
How names compare).
"""

from __future__ import annotations

from typing import Any

import openai
import pytest

from fakes.upstream import FakeUpstream
from integration.conftest import MakeSidecar, openai_bundle

FETCH_SCHEMA = {
    "type": "object",
    "required": ["url"],
    "properties": {"url": {"type": "string"}},
    "additionalProperties": False,
}


async def test_a_guard_scoped_to_a_model_applies_to_every_spelling(
    make_sidecar: MakeSidecar, fake: FakeUpstream
) -> None:
    doc = openai_bundle(fake)
    doc["guards"] = {
        "input": [
            {
                "id": "no-codenames",
                "kind": "deny",
                "words": ["project falcon"],
                "scope": {"models": ["GPT-4o*"]},
            }
        ]
    }
    sc = await make_sidecar(doc)
    async with openai.AsyncOpenAI(base_url=sc.base + "/v1", api_key="x", max_retries=0) as c:
        for model in ("gpt-4o", "GPT-4o-mini"):
            with pytest.raises(openai.BadRequestError, match="no-codenames"):
                await c.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": "about project falcon"}]
                )
    assert fake.requests == []


async def test_a_tool_guard_reads_every_spelling_of_its_tool(
    make_sidecar: MakeSidecar, fake: FakeUpstream
) -> None:
    doc = openai_bundle(fake)
    doc["guards"] = {
        "tool": [
            {
                "id": "fetch-schema",
                "kind": "tool_schema",
                "tools": ["FETCH*"],
                "schemas": {"Fetch": FETCH_SCHEMA},
            }
        ]
    }
    sc = await make_sidecar(doc)
    tools: Any = [{"type": "function", "function": {"name": "fetch", "parameters": {}}}]
    async with openai.AsyncOpenAI(base_url=sc.base + "/v1", api_key="x", max_retries=0) as c:
        with pytest.raises(openai.BadRequestError, match=r"fetch-schema.*SCHEMA_VIOLATION"):
            await c.chat.completions.create(
                model="mock-echo",
                tools=tools,
                messages=[{"role": "user", "content": 'call fetch {"path": "/etc/passwd"}'}],
            )
