"""The default bundle's guards on what agents really send and receive.

Secrets are found in the forms configs, env dumps, command lines and error
messages carry them, and never reach the provider or the decision log; tool
calls keep arguments the tool can parse.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from fakes.upstream import FakeUpstream
from integration.conftest import MakeSidecar, Running, openai_bundle

DEFAULT_BUNDLE = Path(__file__).resolve().parents[2] / "policy_bundles" / "default" / "bundle.yaml"
_RNG = random.Random(11)
SECRET = "".join(_RNG.choice(string.ascii_letters + string.digits) for _ in range(24))


def default_guards() -> dict[str, Any]:
    guards: dict[str, Any] = yaml.safe_load(DEFAULT_BUNDLE.read_text())["guards"]
    return guards


def with_default_guards(fake: FakeUpstream) -> dict[str, Any]:
    doc = openai_bundle(fake)
    doc["guards"] = default_guards()
    return doc


def oai(sc: Running) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sc.base + "/v1", api_key="sk-agent", max_retries=0)


@pytest.mark.parametrize(
    "template",
    [
        "config: password={v}",
        "env: SECRET_KEY={v}",
        "Error: password={v} rejected",
        "db:\n  host: localhost\n  api_key: {v}",
        '{{"password": "{v}"}}',
        "deploy with --api-key {v} please",
        "HOME=/root\nDB_PASSWORD={v}\nTERM=xterm",
    ],
)
async def test_a_keyword_assigned_secret_is_blocked_wherever_it_sits(
    make_sidecar: MakeSidecar, fake: FakeUpstream, tmp_path: Path, template: str
) -> None:
    log = tmp_path / "decisions.jsonl"
    sc = await make_sidecar(
        with_default_guards(fake), decision_log=str(log), decision_log_content=True
    )
    prompt = template.format(v=SECRET)
    async with oai(sc) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": prompt}]
            )
    assert "secrets-in-prompt" in caught.value.message and "GENERIC_SECRET" in caught.value.message
    assert SECRET not in caught.value.message
    assert fake.requests == []
    await sc.sidecar.stop()  # flushes the decision log
    text = log.read_text()
    assert SECRET not in text
    entry = json.loads(text)
    assert entry["guards"][0]["action"] == "block"
    assert entry["content"] == [
        {"channel": "user", "text": prompt.replace(SECRET, "[GENERIC_SECRET]")}
    ]


# --- tool-call arguments --------------------------------------------------------------------

TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "write_file",
            "parameters": {
                "type": "object",
                "properties": {"bytes": {"type": "integer"}, "note": {"type": "string"}},
            },
        },
    }
]
ARGS = {
    "bytes": 2147483648,
    "mode": 420,
    "mobile": 4155552671,  # a phone, but a JSON number: redacting it would change its type
    "note": "Version 1.2.3.4,\ncall Jane at 415-555-2671 or jane.doe@example.com",
    "owner": {"email": "jane.doe@example.com", "uid": 4155552671},
}


async def tool_arguments(client: openai.AsyncOpenAI, *, stream: bool) -> str:
    """The arguments of the one tool call the echo mock proposes, as the agent receives them."""
    messages: Any = [{"role": "user", "content": "call write_file " + json.dumps(ARGS)}]
    if not stream:
        reply = await client.chat.completions.create(
            model="mock-echo", tools=TOOLS, messages=messages
        )
        calls = reply.choices[0].message.tool_calls or []
        assert len(calls) == 1 and calls[0].type == "function"
        return calls[0].function.arguments
    chunks = await client.chat.completions.create(
        model="mock-echo", tools=TOOLS, messages=messages, stream=True
    )
    parts = []
    async for chunk in chunks:
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            if tc.function and tc.function.arguments:
                parts.append(tc.function.arguments)
    return "".join(parts)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_the_default_bundle_leaves_tool_call_arguments_alone(
    make_sidecar: MakeSidecar, fake: FakeUpstream, stream: bool
) -> None:
    sc = await make_sidecar(with_default_guards(fake))
    async with oai(sc) as client:
        arguments = await tool_arguments(client, stream=stream)
        text = await client.chat.completions.create(
            model="mock-echo", messages=[{"role": "user", "content": "mail jane.doe@example.com"}]
        )
    assert json.loads(arguments) == ARGS
    assert text.choices[0].message.content == "mail [EMAIL]"  # the model's text still is read


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("operator", ["placeholder", "mask", "hash"])
async def test_redacting_tool_call_arguments_when_asked_keeps_them_json_of_the_same_types(
    make_sidecar: MakeSidecar, fake: FakeUpstream, stream: bool, operator: str
) -> None:
    doc = openai_bundle(fake)
    doc["guards"] = {
        "output": [
            {
                "id": "pii-everywhere",
                "kind": "pii",
                "action": "redact",
                "redact": operator,
                "channels": ["assistant", "tool_call"],
            }
        ]
    }
    sc = await make_sidecar(doc)
    async with oai(sc) as client:
        arguments = await tool_arguments(client, stream=stream)
    parsed = json.loads(arguments)  # still JSON
    assert parsed["bytes"] == 2147483648 and parsed["mode"] == 420
    assert parsed["owner"]["uid"] == 4155552671  # numbers are never rewritten
    assert parsed["mobile"] == 4155552671
    assert isinstance(parsed["note"], str) and isinstance(parsed["owner"]["email"], str)
    assert "jane.doe@example.com" not in arguments and "415-555-2671" not in arguments
    assert parsed["note"].startswith("Version 1.2.3.4,\ncall Jane at ")
    if operator == "placeholder":
        assert parsed["note"].endswith("[PHONE] or [EMAIL]")
        assert parsed["owner"]["email"] == "[EMAIL]"


async def test_channels_are_checked_per_stage(
    make_sidecar: MakeSidecar, fake: FakeUpstream
) -> None:
    sc = await make_sidecar(openai_bundle(fake))
    doc = openai_bundle(fake)
    doc["guards"] = {
        "output": [{"id": "o", "kind": "pii", "action": "redact", "channels": ["user"]}],
        "input": [{"id": "i", "kind": "pii", "channels": ["tool_call"]}],
        "tool": [{"id": "t", "kind": "pii", "channels": ["assistant"]}],
    }
    sc.write_bundle(doc)
    assert await sc.sidecar.reload("test") == "error"
    problems = "\n".join((sc.sidecar.store.last_error or {}).get("problems", []))
    assert "guards.output[0].channels[0]: 'user' is not a channel of the output stage" in problems
    assert (
        "guards.input[0].channels[0]: 'tool_call' is not a channel of the input stage" in problems
    )
    assert "guards.tool[0].channels: a tool guard reads the arguments of each tool call" in problems
