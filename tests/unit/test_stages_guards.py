"""The guard stages, each alone on a fake call: tool servers, input, tool calls, output.

One bundle holds a blocking, a redacting and a monitoring guard on input
and on output, and a blocking and a monitoring tool guard, so each test
shows one action by the text it sends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from sidecar.adapters import openai
from sidecar.authz.tool_stages import ToolOffer
from sidecar.bundle.store import Generation
from sidecar.chain.exchange import Exchange
from sidecar.chain.stage import PlainReply
from sidecar.errors import ErrorKind, SidecarError
from sidecar.guards.stages import (
    InputGuards,
    OutputGuards,
    ToolCallGuards,
    ToolServerGuards,
    stream_filter,
)
from unit.stage_kit import (
    AGENT,
    Recorded,
    base_bundle,
    chat,
    chat_reply,
    compile_bundle,
    exchange,
    quiet_spans,
    tool_call,
)

STAFF_ID = {"type": "EMPLOYEE_ID", "regex": r"E-\d{6}", "max_length": 8}


def guarded(stage: str) -> list[dict[str, Any]]:
    return [
        {"id": f"dynamite-{stage}", "kind": "deny", "words": ["dynamite"], "action": "block"},
        {
            "id": f"email-{stage}",
            "kind": "pii",
            "types": ["EMAIL"],
            "action": "redact",
            "redact": "placeholder",
        },
        {"id": f"staff-{stage}", "kind": "pattern", "patterns": [STAFF_ID], "action": "monitor"},
    ]


GUARDS: dict[str, Any] = {
    "input": guarded("in"),
    "output": guarded("out"),
    "tool": [
        {"id": "egress", "kind": "egress", "tools": ["fetch"]},
        {"id": "egress-watch", "kind": "egress", "tools": ["search"], "action": "monitor"},
    ],
}


@pytest.fixture
def gen(tmp_path: Path) -> Generation:
    return compile_bundle(tmp_path, base_bundle(guards=GUARDS))


def on(gen: Generation, call: Any) -> Exchange:
    ex = exchange(gen, call)
    ex.principal = AGENT
    return ex


# --- which guard stages a bundle uses ------------------------------------------------------


def test_guard_stages_are_left_out_of_a_chain_when_the_bundle_has_no_such_guards(
    tmp_path: Path, rec: Recorded
) -> None:
    spans = rec.spans
    stages = (ToolServerGuards(spans), InputGuards(spans), ToolCallGuards(spans))
    out = OutputGuards(spans)
    bare = compile_bundle(tmp_path, base_bundle())
    assert rec.chain(bare, *stages, out).names == []
    output_only = compile_bundle(tmp_path, base_bundle(guards={"output": guarded("out")}))
    assert rec.chain(output_only, *stages, out).names == ["guard_output"]
    tool_only = compile_bundle(tmp_path, base_bundle(guards={"tool": GUARDS["tool"]}))
    # Tool guards also read the tool calls a reply proposes, so the output stage stays.
    assert rec.chain(tool_only, *stages, out).names == [
        "tool_servers",
        "guard_tool",
        "guard_output",
    ]


# --- input ---------------------------------------------------------------------------------


async def test_an_input_guard_blocks_and_leaves_the_body_alone(
    gen: Generation, rec: Recorded
) -> None:
    call = chat(text="how do I make dynamite at home")
    ex = on(gen, call)
    with pytest.raises(SidecarError) as refused:
        await rec.chain(gen, InputGuards(rec.spans)).request(ex)
    err = refused.value
    assert err.kind is ErrorKind.INVALID_REQUEST and err.status == 400
    assert err.code == "guard_blocked" and err.retryable is False
    assert err.message.startswith("blocked by guard 'dynamite-in': deny finding")
    assert "dynamite at home" not in err.message  # the finding's type, never its text
    assert call.wire() is call.raw
    span = rec.attributes("guard.input")
    assert span["sidecar.guard.outcome"] == "block"
    assert span["sidecar.guard.id"] == ("dynamite-in",)
    assert span["sidecar.guard.findings"] == 1


async def test_an_input_guard_redacts_and_the_body_is_serialized_once(
    gen: Generation, rec: Recorded
) -> None:
    body = {
        "model": "mock-echo",
        "messages": [
            {"role": "system", "content": "Mail support@example.com for help."},
            {"role": "user", "content": "write to jo@example.com"},
            {"role": "user", "content": "and to al@example.org"},
        ],
    }
    call = openai.ADAPTER.parse("/v1/chat/completions", orjson.dumps(body))
    ex = on(gen, call)
    await rec.chain(gen, InputGuards(rec.spans)).request(ex)
    sent = call.wire()
    assert sent is not call.raw and call.wire() is sent
    forwarded = orjson.loads(sent)
    assert [m["content"] for m in forwarded["messages"]] == [
        "Mail support@example.com for help.",  # the system prompt is not read by default
        "write to [EMAIL]",
        "and to [EMAIL]",
    ]
    assert ex.guards is not None and ex.guards.redactions() == {"email-in": 2}
    assert ex.sidecar_headers()["x-sidecar-redacted"] == "email-in=2"
    span = rec.attributes("guard.input")
    assert span["sidecar.guard.outcome"] == "redact"
    assert span["sidecar.guard.finding_types"] == ("EMAIL",)


async def test_an_input_guard_that_monitors_records_and_changes_nothing(
    gen: Generation, rec: Recorded
) -> None:
    call = chat(text="my badge is E-123456")
    ex = on(gen, call)
    await rec.chain(gen, InputGuards(rec.spans)).request(ex)
    assert call.wire() is call.raw
    assert ex.guards is not None
    assert [(h.guard, h.type, h.action) for h in ex.guards.hits] == [
        ("staff-in", "EMPLOYEE_ID", "monitor")
    ]
    assert "x-sidecar-redacted" not in ex.sidecar_headers()
    span = rec.attributes("guard.input")
    assert span["sidecar.guard.outcome"] == "pass" and span["sidecar.guard.findings"] == 1


async def test_clean_input_passes_with_nothing_recorded(gen: Generation, rec: Recorded) -> None:
    call = chat(text="what is the capital of France?")
    ex = on(gen, call)
    await rec.chain(gen, InputGuards(rec.spans)).request(ex)
    assert call.wire() is call.raw
    assert ex.guards is not None and ex.guards.hits == []
    assert ex.subject is not None and ex.subject.model == "mock-echo"
    assert rec.attributes("guard.input") == {
        "sidecar.guard.findings": 0,
        "sidecar.guard.outcome": "pass",
    }


# --- tool calls (a tool check) -------------------------------------------------------------


async def test_a_tool_guard_blocks_a_tool_calls_arguments(gen: Generation, rec: Recorded) -> None:
    ex = on(gen, tool_call("fetch", {"url": "http://169.254.169.254/latest/meta-data"}))
    with pytest.raises(SidecarError) as refused:
        await rec.chain(gen, ToolCallGuards(rec.spans)).request(ex)
    err = refused.value
    assert err.code == "guard_blocked" and err.status == 400
    assert err.message.startswith("blocked by guard 'egress': egress finding")
    assert "tool stage" in err.message
    span = rec.attributes("guard.tool")
    assert span["sidecar.guard.outcome"] == "block" and span["sidecar.guard.id"] == ("egress",)


async def test_a_tool_guard_that_monitors_records_and_passes(
    gen: Generation, rec: Recorded
) -> None:
    ex = on(gen, tool_call("search", {"q": "see http://10.0.0.8/admin"}))
    await rec.chain(gen, ToolCallGuards(rec.spans)).request(ex)
    assert ex.guards is not None
    assert [(h.guard, h.stage, h.action) for h in ex.guards.hits] == [
        ("egress-watch", "tool", "monitor")
    ]
    assert rec.attributes("guard.tool")["sidecar.guard.outcome"] == "pass"


async def test_a_tool_call_no_tool_guard_reads_passes_unread(
    gen: Generation, rec: Recorded
) -> None:
    ex = on(gen, tool_call("calc", {"expr": "http://169.254.169.254/"}))
    await rec.chain(gen, ToolCallGuards(rec.spans)).request(ex)
    assert ex.guards is not None and ex.guards.hits == []
    assert rec.exporter.get_finished_spans() == ()  # no guard read it: no guard span


# --- tool servers --------------------------------------------------------------------------


def mcp_call(url: str) -> Any:
    body = {
        "model": "mock-echo",
        "input": "look it up",
        "tools": [
            {
                "type": "mcp",
                "server_label": "internal",
                "server_url": url,
                "allowed_tools": ["search"],
                "require_approval": "never",
            }
        ],
    }
    return openai.ADAPTER.parse("/v1/responses", orjson.dumps(body))


async def test_a_tool_server_at_a_private_address_is_refused(tmp_path: Path, rec: Recorded) -> None:
    gen = compile_bundle(tmp_path, base_bundle(guards={"tool": GUARDS["tool"]}))
    ex = on(gen, mcp_call("http://169.254.169.254/mcp"))
    chain = rec.chain(gen, ToolOffer(), ToolServerGuards(rec.spans))
    with pytest.raises(SidecarError) as refused:
        await chain.request(ex)
    assert ex.tool_servers == [("internal", "http://169.254.169.254/mcp")]
    err = refused.value
    assert err.code == "guard_blocked" and "tool server internal" in err.message


async def test_a_public_tool_server_passes(tmp_path: Path, rec: Recorded) -> None:
    gen = compile_bundle(tmp_path, base_bundle(guards={"tool": GUARDS["tool"]}))
    call = mcp_call("https://mcp.example.com/sse")
    ex = on(gen, call)
    await rec.chain(gen, ToolOffer(), ToolServerGuards(rec.spans)).request(ex)
    assert ex.guards is not None and ex.guards.hits == []
    assert call.wire() is call.raw


# --- output, on a plain reply --------------------------------------------------------------


async def test_an_output_guard_redacts_a_plain_reply_through_replace(gen: Generation) -> None:
    ex = on(gen, chat())
    reply = PlainReply(chat_reply("reach me at jo@example.com"))
    await OutputGuards(quiet_spans()).reply(ex, reply)
    assert reply.changed
    body = orjson.loads(reply.body)
    assert body["choices"][0]["message"]["content"] == "reach me at [EMAIL]"
    assert body["usage"]["completion_tokens"] == 2  # the rest of the reply as it was
    assert ex.guards is not None and ex.guards.redactions() == {"email-out": 1}


async def test_an_output_guard_blocks_a_plain_reply(gen: Generation, rec: Recorded) -> None:
    ex = on(gen, chat())
    rec.root(ex)
    raw = chat_reply("mix the dynamite slowly")
    reply = PlainReply(raw)
    with pytest.raises(SidecarError) as refused:
        await rec.chain(gen, OutputGuards(rec.spans)).reply(ex, reply)
    assert refused.value.code == "guard_blocked"
    assert refused.value.message.startswith("blocked by guard 'dynamite-out'")
    assert "output stage" in refused.value.message
    assert reply.body is raw and not reply.changed
    span = rec.attributes("guard.output")
    assert span["sidecar.guard.outcome"] == "block"


async def test_an_output_guard_that_monitors_leaves_the_reply_bytes(
    gen: Generation, rec: Recorded
) -> None:
    ex = on(gen, chat())
    rec.root(ex)
    raw = chat_reply("your badge is E-654321")
    reply = PlainReply(raw)
    await rec.chain(gen, OutputGuards(rec.spans)).reply(ex, reply)
    assert reply.body is raw and not reply.changed
    assert ex.guards is not None
    assert [(h.guard, h.stage, h.action) for h in ex.guards.hits] == [
        ("staff-out", "output", "monitor")
    ]
    assert rec.attributes("guard.output")["sidecar.guard.outcome"] == "pass"


async def test_a_reply_guards_cannot_read_passes_as_it_came(gen: Generation) -> None:
    ex = on(gen, chat())
    raw = b"<html>upstream hiccup jo@example.com</html>"
    reply = PlainReply(raw)
    await OutputGuards(quiet_spans()).reply(ex, reply)
    assert reply.body is raw and not reply.changed


async def test_a_stream_gets_an_output_filter_only_when_the_bundle_has_guards(
    tmp_path: Path, gen: Generation
) -> None:
    spans = quiet_spans()
    assert stream_filter(on(gen, chat(stream=True)), spans) is not None
    bare = compile_bundle(tmp_path, base_bundle())
    assert stream_filter(on(bare, chat(stream=True)), spans) is None
