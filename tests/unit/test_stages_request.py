"""The request stages before any guard, each alone on a fake call: identify, authorize,
tool offer (and its reply gate), route.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from sidecar.authz.stage import Authorize
from sidecar.authz.tool_stages import ToolCallGate, ToolOffer
from sidecar.bundle.store import Generation
from sidecar.chain.exchange import Exchange
from sidecar.chain.stage import PlainReply
from sidecar.errors import ErrorKind, SidecarError
from sidecar.forward.route import RouteStage
from sidecar.identity.principal import Principal
from sidecar.identity.stage import Identify
from unit.stage_kit import (
    AGENT,
    MISSING_KEY_VAR,
    POD,
    Recorded,
    base_bundle,
    chat,
    chat_reply,
    compile_bundle,
    exchange,
    function,
    messages,
    sha,
    tool_call,
)

# --- identify ------------------------------------------------------------------------------


async def test_identify_gives_the_pod_identity_and_marks_the_root_span(
    tmp_path: Path, rec: Recorded
) -> None:
    gen = compile_bundle(tmp_path, base_bundle())
    ex = exchange(gen, chat())
    rec.root(ex)
    await rec.chain(gen, Identify(POD, recording=True)).request(ex)
    assert ex.principal == Principal(
        "agent-7", "acme", "agent-7", roles=frozenset({"agent"}), via="pod"
    )
    assert ex.span is not None
    ex.span.end()
    root = rec.attributes("chat mock-echo")
    assert root["sidecar.tenant.id"] == "acme"
    assert root["sidecar.principal.id"] == "agent-7"
    assert rec.finished("identity.resolve").parent is not None
    assert "identify" in ex.timings


async def test_identify_leaves_the_root_span_alone_when_spans_do_not_record(
    tmp_path: Path, rec: Recorded
) -> None:
    gen = compile_bundle(tmp_path, base_bundle())
    ex = exchange(gen, chat())
    rec.root(ex)
    Identify(POD, recording=False).request(ex)
    assert ex.principal is not None and ex.span is not None
    ex.span.end()
    assert "sidecar.tenant.id" not in rec.attributes("chat mock-echo")


def keyed_bundle() -> dict[str, object]:
    return base_bundle(
        identity={
            "api_keys": [
                {
                    "principal": "research-bot",
                    "tenant": "globex",
                    "user": "jane",
                    "roles": ["agent"],
                    "sha256": [sha("sk-old"), sha("sk-new")],
                }
            ]
        }
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": "Bearer sk-new"},
        {"authorization": "Bearer sk-old"},  # a key being rotated out still works
        {"x-api-key": "sk-new"},  # the Anthropic SDK's header
    ],
)
async def test_identify_resolves_a_hashed_api_key_to_its_principal(
    tmp_path: Path, headers: dict[str, str]
) -> None:
    gen = compile_bundle(tmp_path, keyed_bundle())
    call = chat()
    call.headers = headers
    ex = exchange(gen, call)
    Identify(POD, recording=False).request(ex)
    assert ex.principal == Principal(
        "research-bot", "globex", "research-bot", "jane", frozenset({"agent"}), "api_key"
    )


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"authorization": "Bearer sk-guessed"}, "invalid_api_key"),
        ({"authorization": f"Bearer {sha('sk-new')}"}, "invalid_api_key"),  # the digest is no key
        ({}, "missing_api_key"),
    ],
)
async def test_identify_refuses_a_wrong_or_missing_key_with_401(
    tmp_path: Path, rec: Recorded, headers: dict[str, str], code: str
) -> None:
    gen = compile_bundle(tmp_path, keyed_bundle())
    call = chat()
    call.headers = headers
    ex = exchange(gen, call)
    rec.root(ex)
    with pytest.raises(SidecarError) as refused:
        await rec.chain(gen, Identify(POD, recording=True)).request(ex)
    err = refused.value
    assert err.kind is ErrorKind.UNAUTHENTICATED and err.status == 401 and err.code == code
    assert "sk-guessed" not in err.message
    assert ex.principal is None
    span = rec.finished("identity.resolve")
    assert span.status.description == err.message


# --- authorize -----------------------------------------------------------------------------

FORBID_SECRET = """
@id("no-secret-models")
forbid(principal, action, resource is Sidecar::Model)
when { resource.name like "mock-secret*" };
"""
FORBID_STREAMS = """
@id("no-streamed-tools")
forbid(principal, action == Sidecar::Action::"tool.call", resource)
when { context.stream };
"""
FORBID_SHELL_OFFERS = """
@id("no-shell-beside-search")
forbid(principal, action == Sidecar::Action::"tool.call", resource)
when { context.tools.contains("shell") };
"""


def policy_bundle(tmp_path: Path, text: str) -> Generation:
    return compile_bundle(
        tmp_path, base_bundle(policies=["policies/*.cedar"]), {"policies/p.cedar": text}
    )


async def test_authorize_allows_and_names_the_deciding_policy(
    tmp_path: Path, rec: Recorded
) -> None:
    gen = compile_bundle(tmp_path, base_bundle())
    ex = exchange(gen, chat())
    ex.principal = AGENT
    rec.root(ex)
    await rec.chain(gen, Authorize(rec.telemetry.instruments, recording=True)).request(ex)
    assert ex.decision is not None and ex.decision.allowed
    assert ex.decision.policies == ("role:agent[0]",)
    assert ex.span is not None
    ex.span.end()
    for name in ("policy.authorize", "chat mock-echo"):  # its own span, and the call's
        attrs = rec.attributes(name)
        assert attrs["sidecar.decision"] == "allow", name
        assert attrs["sidecar.decision.policies"] == ("role:agent[0]",), name
    assert 'sidecar_decisions_total{result="allow",sidecar_action="llm.chat"} 1.0' in rec.metrics()


async def test_authorize_denies_by_default_and_says_so(tmp_path: Path, rec: Recorded) -> None:
    gen = compile_bundle(tmp_path, base_bundle())
    ex = exchange(gen, messages("claude-3-haiku"))
    ex.principal = AGENT
    with pytest.raises(SidecarError) as refused:
        await rec.chain(gen, Authorize(rec.telemetry.instruments, recording=True)).request(ex)
    err = refused.value
    assert err.kind is ErrorKind.FORBIDDEN and err.status == 403 and err.code == "policy_denied"
    assert err.message == (
        "no policy permits llm.chat on model 'claude-3-haiku' for principal 'agent-7' "
        "(tenant 'acme', roles agent); the sidecar denies by default [bundle revision stages-1]"
    )
    assert ex.decision is not None and not ex.decision.allowed and ex.decision.policies == ()
    assert rec.attributes("policy.authorize") == {"sidecar.decision": "deny"}
    assert 'sidecar_decisions_total{result="deny",sidecar_action="llm.chat"} 1.0' in rec.metrics()


async def test_authorize_names_the_forbid_policy_that_decided(
    tmp_path: Path, rec: Recorded
) -> None:
    gen = policy_bundle(tmp_path, FORBID_SECRET)
    ex = exchange(gen, chat("mock-secret-2"))
    ex.principal = AGENT
    with pytest.raises(SidecarError) as refused:
        Authorize(rec.telemetry.instruments, recording=False).request(ex)
    assert refused.value.message.startswith(
        "denied by policy 'no-secret-models': llm.chat on model 'mock-secret-2' for principal "
        "'agent-7' (tenant 'acme', roles agent)"
    )
    assert ex.decision is not None and ex.decision.policies == ("no-secret-models",)


async def test_authorize_names_the_resource_type_of_a_tool(tmp_path: Path, rec: Recorded) -> None:
    gen = compile_bundle(tmp_path, base_bundle())
    ex = exchange(gen, tool_call("Shell", {"cmd": "ls"}))
    ex.principal = AGENT
    with pytest.raises(SidecarError) as refused:
        Authorize(rec.telemetry.instruments, recording=False).request(ex)
    assert "no policy permits tool.call on tool 'shell' for principal 'agent-7'" in (
        refused.value.message
    )
    ex = exchange(gen, tool_call("search", {"q": "x"}))
    ex.principal = AGENT
    Authorize(rec.telemetry.instruments, recording=False).request(ex)
    assert ex.decision is not None and ex.decision.policies == ("role:agent[1]",)


async def test_the_surfaces_stream_attribute_reaches_cedar(tmp_path: Path, rec: Recorded) -> None:
    gen = policy_bundle(tmp_path, FORBID_STREAMS)
    stage = Authorize(rec.telemetry.instruments, recording=False)
    plain = exchange(gen, tool_call("search", {"q": "x"}))
    plain.principal = AGENT
    stage.request(plain)
    assert plain.decision is not None and plain.decision.allowed
    streamed = exchange(gen, tool_call("search", {"q": "x"}, stream=True))
    streamed.principal = AGENT
    with pytest.raises(SidecarError, match="denied by policy 'no-streamed-tools'"):
        stage.request(streamed)  # same caller, action and tool: only the attribute differs


async def test_the_surfaces_tools_attribute_reaches_cedar(tmp_path: Path, rec: Recorded) -> None:
    gen = policy_bundle(tmp_path, FORBID_SHELL_OFFERS)
    stage = Authorize(rec.telemetry.instruments, recording=False)
    alone = exchange(gen, tool_call("search", {}, tools=frozenset({"search"})))
    alone.principal = AGENT
    stage.request(alone)
    assert alone.decision is not None and alone.decision.allowed
    beside = exchange(gen, tool_call("search", {}, tools=frozenset({"search", "shell"})))
    beside.principal = AGENT
    with pytest.raises(SidecarError, match="denied by policy 'no-shell-beside-search'"):
        stage.request(beside)


# --- tool offer and the reply's tool-call gate ---------------------------------------------


def offering(tmp_path: Path, mode: str = "remove") -> tuple[Generation, Exchange]:
    gen = compile_bundle(tmp_path, base_bundle(tool_policy={"request": mode}))
    call = chat(
        tools=[function("search"), function("shell"), function("fetch")],
        tool_choice={"type": "function", "function": {"name": "shell"}},
    )
    ex = exchange(gen, call)
    ex.principal = AGENT
    return gen, ex


async def test_a_call_offering_no_tools_gets_no_gate_and_its_bytes_go_untouched(
    tmp_path: Path, rec: Recorded
) -> None:
    gen = compile_bundle(tmp_path, base_bundle())
    call = chat()
    ex = exchange(gen, call)
    ex.principal = AGENT
    await rec.chain(gen, ToolOffer()).request(ex)
    assert ex.tool_gate is None and ex.tools_removed == () and ex.tool_servers is None
    assert call.wire() is call.raw


async def test_offered_tools_all_permitted_leave_the_body_as_received(tmp_path: Path) -> None:
    gen = compile_bundle(tmp_path, base_bundle())
    call = chat(tools=[function("search"), function("fetch")])
    ex = exchange(gen, call)
    ex.principal = AGENT
    ToolOffer().request(ex)
    assert ex.tool_gate is not None and ex.tools_removed == ()
    assert call.wire() is call.raw


async def test_forbidden_tools_are_removed_and_the_body_serialized_once(
    tmp_path: Path, rec: Recorded
) -> None:
    gen, ex = offering(tmp_path)
    await rec.chain(gen, ToolOffer()).request(ex)
    call = ex.call
    assert call is not None
    assert ex.tools_removed == ("shell",)
    assert ex.sidecar_headers()["x-sidecar-tools-removed"] == "shell"
    sent = call.wire()
    assert sent is not call.raw and call.wire() is sent  # encoded once, however often read
    body = orjson.loads(sent)
    assert [t["function"]["name"] for t in body["tools"]] == ["search", "fetch"]
    assert body["tool_choice"] == "auto"  # it named the removed tool
    assert body["messages"] == orjson.loads(call.raw)["messages"]
    assert rec.finished("policy.tools").status.is_ok


async def test_forbidden_tools_are_removed_from_an_anthropic_body_too(tmp_path: Path) -> None:
    gen = compile_bundle(tmp_path, base_bundle())
    schema = {"type": "object"}
    call = messages(
        tools=[
            {"name": "shell", "input_schema": schema},
            {"name": "search", "input_schema": schema},
        ]
    )
    ex = exchange(gen, call)
    ex.principal = AGENT
    ToolOffer().request(ex)
    assert ex.tools_removed == ("shell",)
    assert [t["name"] for t in orjson.loads(call.wire())["tools"]] == ["search"]


async def test_mode_deny_refuses_a_call_that_offers_a_forbidden_tool(tmp_path: Path) -> None:
    _, ex = offering(tmp_path, "deny")
    with pytest.raises(SidecarError) as refused:
        ToolOffer().request(ex)
    err = refused.value
    assert err.kind is ErrorKind.FORBIDDEN and err.code == "tool_forbidden"
    assert err.message == (
        "the request offers tools 'shell' that principal 'agent-7' may not call "
        "[bundle revision stages-1]"
    )
    call = ex.call
    assert call is not None and call.wire() is call.raw


async def test_the_gate_blocks_a_plain_reply_proposing_a_forbidden_tool(tmp_path: Path) -> None:
    gen = compile_bundle(tmp_path, base_bundle())
    call = chat(tools=[function("search")])
    ex = exchange(gen, call)
    ex.principal = AGENT
    ToolOffer().request(ex)
    reply = PlainReply(chat_reply(tools=["search", "delete_repo"]))
    with pytest.raises(SidecarError) as refused:
        ToolCallGate().reply(ex, reply)
    err = refused.value
    assert err.kind is ErrorKind.FORBIDDEN and err.code == "tool_call_blocked"
    assert err.message == (
        "the model proposed a call to tool 'delete_repo', which principal 'agent-7' may not "
        "call; the response was blocked [bundle revision stages-1]"
    )


async def test_the_gate_passes_a_reply_proposing_a_permitted_tool(tmp_path: Path) -> None:
    gen = compile_bundle(tmp_path, base_bundle())
    call = chat(tools=[function("search")])
    ex = exchange(gen, call)
    ex.principal = AGENT
    ToolOffer().request(ex)
    body = chat_reply(tools=["search"])
    reply = PlainReply(body)
    ToolCallGate().reply(ex, reply)
    assert reply.body is body and not reply.changed


async def test_the_gate_is_idle_for_a_call_that_offered_no_tools(tmp_path: Path) -> None:
    gen = compile_bundle(tmp_path, base_bundle())
    ex = exchange(gen, chat())
    ex.principal = AGENT
    ToolOffer().request(ex)
    reply = PlainReply(chat_reply(tools=["delete_repo"]))
    ToolCallGate().reply(ex, reply)  # nothing was offered, so nothing is inspected
    assert not reply.changed


# --- route ---------------------------------------------------------------------------------


async def test_route_finds_the_upstream_and_marks_the_root_span(
    tmp_path: Path, rec: Recorded
) -> None:
    gen = compile_bundle(tmp_path, base_bundle())
    ex = exchange(gen, chat())
    rec.root(ex)
    await rec.chain(gen, RouteStage(recording=True)).request(ex)
    assert ex.route is not None and ex.route.name == "mock-route"
    assert ex.upstream is not None and ex.upstream.name == "mock"
    assert ex.sidecar_headers()["x-sidecar-upstream"] == "mock"
    assert ex.span is not None
    ex.span.end()
    root = rec.attributes("chat mock-echo")
    assert root["sidecar.route"] == "mock-route" and root["sidecar.upstream"] == "mock"
    assert "gen_ai.provider.name" in root


async def test_route_refuses_a_model_no_route_serves(tmp_path: Path) -> None:
    gen = compile_bundle(tmp_path, base_bundle())
    ex = exchange(gen, chat("llama-3"))
    with pytest.raises(SidecarError) as refused:
        RouteStage(recording=False).request(ex)
    err = refused.value
    assert err.kind is ErrorKind.NOT_FOUND and err.status == 404
    assert err.code == "model_not_found" and err.param == "model"
    assert err.message == (
        "no route in bundle revision stages-1 serves model 'llama-3' on /v1/chat/completions"
    )
    assert ex.route is None and ex.upstream is None


async def test_route_refuses_an_upstream_whose_credential_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rec: Recorded
) -> None:
    monkeypatch.delenv(MISSING_KEY_VAR, raising=False)
    gen = compile_bundle(tmp_path, base_bundle())
    ex = exchange(gen, chat("gpt-4o"))
    rec.root(ex)
    with pytest.raises(SidecarError) as refused:
        RouteStage(recording=True).request(ex)
    err = refused.value
    assert err.kind is ErrorKind.MISCONFIGURED and err.code == "upstream_credential_missing"
    assert err.retryable is False and err.status == 500
    assert err.message.startswith("configuration error in the sidecar, not in the request")
    assert MISSING_KEY_VAR in err.message
    # The route was found: the refusal and the span say where the call would have gone.
    assert ex.route is not None and ex.route.name == "gpt-route"
    assert ex.upstream is not None and ex.upstream.name == "openai"
