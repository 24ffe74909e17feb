"""``sidecar run`` with no --bundle serves the embedded default bundle.

SPEC: with no provider keys in the environment it becomes ready and answers
``mock-*`` models from the built-in mock, which echoes the last user message.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from .harness import DEFAULT_BUNDLE_FILE, Sidecar, SidecarLauncher

ECHO = "please echo kumquat-7731"


def mock_models() -> tuple[str, str]:
    """An OpenAI-ish and an Anthropic-ish mock model name from the default bundle."""
    names: list[str] = ["mock-echo"]
    if DEFAULT_BUNDLE_FILE.exists():
        doc = yaml.safe_load(DEFAULT_BUNDLE_FILE.read_text())
        mock = (doc.get("upstreams") or {}).get("mock") or {}
        names = [m for m in mock.get("models") or [] if str(m).startswith("mock-")] or names
    claude = next((m for m in names if "claude" in m), "mock-claude")
    gpt = next((m for m in names if "claude" not in m), "mock-echo")
    return gpt, claude


@pytest.fixture
async def default_sidecar(launch: SidecarLauncher) -> Sidecar:
    return await launch(None)


async def test_default_bundle_mock_chat(default_sidecar: Sidecar) -> None:
    gpt, _ = mock_models()
    client = default_sidecar.openai()
    raw = await client.chat.completions.with_raw_response.create(
        model=gpt,
        messages=[
            {"role": "user", "content": "an earlier turn"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": ECHO},
        ],
    )
    plain = raw.parse().choices[0].message.content or ""
    assert ECHO in plain
    assert "an earlier turn" not in plain, "the mock must echo the LAST user message"
    assert raw.headers.get("x-sidecar-decision-id")
    assert raw.headers.get("x-sidecar-bundle-revision")

    stream = await client.chat.completions.create(
        model=gpt, messages=[{"role": "user", "content": ECHO}], stream=True
    )
    streamed = ""
    async for chunk in stream:
        if chunk.choices:
            streamed += chunk.choices[0].delta.content or ""
    assert streamed == plain


async def test_default_bundle_mock_anthropic(default_sidecar: Sidecar) -> None:
    _, claude = mock_models()
    client = default_sidecar.anthropic()
    msg = await client.messages.create(
        model=claude, max_tokens=64, messages=[{"role": "user", "content": ECHO}]
    )
    assert msg.content[0].type == "text"
    assert ECHO in msg.content[0].text
    async with client.messages.stream(
        model=claude, max_tokens=64, messages=[{"role": "user", "content": ECHO}]
    ) as stream:
        streamed = "".join([t async for t in stream.text_stream])
    assert streamed == msg.content[0].text


async def test_default_bundle_info_and_models(default_sidecar: Sidecar) -> None:
    models = await default_sidecar.openai().models.list()
    ids = {m.id for m in models.data}
    gpt, claude = mock_models()
    assert {gpt, claude} <= ids, ids
    info = await default_sidecar.admin_json("/bundle")
    if DEFAULT_BUNDLE_FILE.exists():
        doc = yaml.safe_load(DEFAULT_BUNDLE_FILE.read_text())
        assert info["revision"] == str(doc["revision"])
    assert info["last_error"] is None


async def test_default_bundle_keeps_tool_call_arguments_valid_json(
    default_sidecar: Sidecar,
) -> None:
    """The output PII guard must not turn `{"bytes": 2147483648}` into `{"bytes": [PHONE]}`."""
    gpt, _ = mock_models()
    client = default_sidecar.openai()
    args = {
        "path": "/x.bin",
        "bytes": 2147483648,
        "note": "Version 1.2.3.4",
        "cc": "jo@example.com",
    }
    tools: Any = [{"type": "function", "function": {"name": "write_file", "parameters": {}}}]
    messages: Any = [{"role": "user", "content": "call write_file " + json.dumps(args)}]
    reply = await client.chat.completions.create(model=gpt, tools=tools, messages=messages)
    [call] = reply.choices[0].message.tool_calls or []
    assert call.type == "function" and json.loads(call.function.arguments) == args

    stream = await client.chat.completions.create(
        model=gpt, tools=tools, messages=messages, stream=True
    )
    parts = []
    async for chunk in stream:
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            if tc.function and tc.function.arguments:
                parts.append(tc.function.arguments)
    assert json.loads("".join(parts)) == args
