"""The closing stages, each alone on a fake call: limits (admission and settlement) and
account (metrics, the decision log, the end of the call's span).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.trace import StatusCode

from sidecar.authz.stage import Authorize
from sidecar.bundle.store import Generation
from sidecar.call import Call, Usage
from sidecar.chain.exchange import Exchange, Outcome
from sidecar.errors import ErrorKind
from sidecar.forward.route import RouteStage
from sidecar.guards.stages import InputGuards
from sidecar.identity.stage import Identify
from sidecar.limits.limiter import LimitRefused, LimitStores
from sidecar.limits.stage import Limits
from sidecar.telemetry.account import Account, log_entry
from sidecar.telemetry.decision_log import DecisionLog
from unit.stage_kit import (
    AGENT,
    POD,
    Recorded,
    base_bundle,
    chat,
    chat_reply,
    compile_bundle,
    exchange,
    messages,
    tool_call,
)


def limited(tmp_path: Path, *rules: dict[str, Any]) -> Generation:
    return compile_bundle(tmp_path, base_bundle(limits=list(rules)))


def on(gen: Generation, call: Call, decision_id: str = "decision-1") -> Exchange:
    ex = exchange(gen, call, decision_id)
    ex.principal = AGENT
    return ex


ONE_A_MINUTE = {"id": "per-tenant", "key": ["tenant"], "requests": {"limit": 1, "per": "1m"}}


# --- limits: admission ---------------------------------------------------------------------


async def test_limits_admit_then_refuse_with_rate_limit_headers(
    tmp_path: Path, rec: Recorded
) -> None:
    gen = limited(tmp_path, ONE_A_MINUTE)
    limits = Limits(LimitStores(), rec.telemetry.instruments)
    chain = rec.chain(gen, limits)
    first = on(gen, chat())
    await chain.request(first)
    assert first.admission is not None and first.admission.rules == ("per-tenant",)
    assert first.limit_refused is None
    assert dict(first.limit_headers or []) == {
        "x-ratelimit-limit-requests": "1",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": dict(first.limit_headers or [])["x-ratelimit-reset-requests"],
    }
    second = on(gen, chat(), "decision-2")
    with pytest.raises(LimitRefused) as refused:
        await chain.request(second)
    err = refused.value
    assert err.kind is ErrorKind.RATE_LIMITED and err.status == 429
    assert err.rule == "per-tenant" and "per-tenant" in err.message
    assert err.retry_after is not None and err.retry_after > 0
    assert second.admission is None and second.limit_refused == "per-tenant"
    headers = second.sidecar_headers()
    assert headers["x-ratelimit-limit-requests"] == "1"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    metrics = rec.metrics()
    assert 'sidecar_limit_decisions_total{result="admitted",sidecar_limit_id="per-tenant"} 1.0' in (
        metrics
    )
    assert 'sidecar_limit_decisions_total{result="rejected",sidecar_limit_id="per-tenant"} 1.0' in (
        metrics
    )


async def test_an_anthropic_call_gets_anthropic_rate_limit_headers(
    tmp_path: Path, rec: Recorded
) -> None:
    gen = limited(tmp_path, ONE_A_MINUTE)
    ex = on(gen, messages())
    await Limits(LimitStores(), rec.telemetry.instruments).request(ex)
    names = [name for name, _ in ex.limit_headers or []]
    assert names == [
        "anthropic-ratelimit-requests-limit",
        "anthropic-ratelimit-requests-remaining",
        "anthropic-ratelimit-requests-reset",
    ]


async def test_limits_describe_none_admitted_and_rejected(tmp_path: Path, rec: Recorded) -> None:
    tools_only = {
        "id": "searches",
        "match": {"tools": ["search"]},
        "requests": {"limit": 1, "per": "1m"},
    }
    gen = limited(tmp_path, tools_only)
    chain = rec.chain(gen, Limits(LimitStores(), rec.telemetry.instruments))
    unmatched = on(gen, chat())  # an LLM call never matches a rule that lists tools
    await chain.request(unmatched)
    assert unmatched.admission is None and unmatched.limit_headers is None
    await chain.request(on(gen, tool_call("search", {"q": "a"})))
    with pytest.raises(LimitRefused):
        await chain.request(on(gen, tool_call("search", {"q": "b"})))
    checks = [dict(s.attributes or {}) for s in rec.exporter.get_finished_spans()]
    assert checks == [
        {"sidecar.limit.result": "none"},
        {"sidecar.limit.result": "admitted", "sidecar.limit.rules": ("searches",)},
        {"sidecar.limit.result": "rejected", "sidecar.limit.rules": ("searches",)},
    ]
    refused = rec.exporter.get_finished_spans()[2]
    assert refused.status.status_code is StatusCode.ERROR


def tools_and_models(tmp_path: Path, models: str) -> Generation:
    return limited(
        tmp_path,
        {"id": "searches", "match": {"tools": ["search"]}, "requests": {"limit": 2, "per": "1m"}},
        {"id": "models", "match": {"models": [models]}, "requests": {"limit": 1, "per": "1m"}},
    )


async def count_tools_then_chat(gen: Generation, rec: Recorded) -> None:
    """Two searches fill the tools rule; the models rule, holding one call, stays free."""
    limits = Limits(LimitStores(), rec.telemetry.instruments)
    ex = on(gen, tool_call("search", {"q": "a"}))
    await limits.request(ex)
    assert ex.admission is not None and ex.admission.rules == ("searches",)
    await limits.request(on(gen, tool_call("search", {"q": "b"}), "decision-2"))
    with pytest.raises(LimitRefused) as refused:
        await limits.request(on(gen, tool_call("search", {"q": "c"}), "decision-3"))
    assert refused.value.rule == "searches"
    chat_call = on(gen, chat(), "decision-4")
    await limits.request(chat_call)
    assert chat_call.admission is not None and chat_call.admission.rules == ("models",)
    other_tool = on(gen, tool_call("fetch", {"url": "https://example.com"}), "decision-5")
    await limits.request(other_tool)
    assert other_tool.admission is None


async def test_a_tool_call_is_counted_by_a_tools_rule_and_not_by_a_models_rule(
    tmp_path: Path, rec: Recorded
) -> None:
    await count_tools_then_chat(tools_and_models(tmp_path, "mock-*"), rec)


async def test_a_models_rule_matching_every_name_does_not_count_tool_calls(
    tmp_path: Path, rec: Recorded
) -> None:
    await count_tools_then_chat(tools_and_models(tmp_path, "*"), rec)


# --- limits: settlement and what admission asks of the request -----------------------------


async def test_settling_in_complete_releases_the_concurrency_lease(
    tmp_path: Path, rec: Recorded
) -> None:
    gen = limited(tmp_path, {"id": "one-at-a-time", "concurrent": 1})
    limits = Limits(LimitStores(), rec.telemetry.instruments)
    first = on(gen, chat())
    await limits.request(first)
    with pytest.raises(LimitRefused) as refused:
        await limits.request(on(gen, chat(), "decision-2"))
    assert refused.value.rule == "one-at-a-time"
    limits.complete(first, Outcome(200, usage=Usage(input_tokens=2, output_tokens=3)))
    third = on(gen, chat(), "decision-3")
    await limits.request(third)
    assert third.admission is not None and third.admission.rules == ("one-at-a-time",)


async def test_a_call_refused_after_admission_still_frees_its_lease(
    tmp_path: Path, rec: Recorded
) -> None:
    gen = limited(tmp_path, {"id": "one-at-a-time", "concurrent": 1})
    limits = Limits(LimitStores(), rec.telemetry.instruments)
    first = on(gen, chat())
    await limits.request(first)
    limits.complete(first, Outcome(400, error_type="invalid_request"))
    second = on(gen, chat(), "decision-2")
    await limits.request(second)
    assert second.admission is not None


TOKENS = {"id": "tokens", "tokens": {"limit": 100_000, "per": "1h"}}


async def test_a_streamed_openai_chat_under_a_token_rule_asks_for_usage(
    tmp_path: Path, rec: Recorded
) -> None:
    gen = limited(tmp_path, TOKENS)
    call = chat(stream=True)
    ex = on(gen, call)
    await Limits(LimitStores(), rec.telemetry.instruments).request(ex)
    assert ex.drop_usage_chunk  # the caller did not ask: the relay takes the chunk out
    sent = call.wire()
    assert sent is not call.raw and call.wire() is sent
    assert orjson.loads(sent)["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    "call",
    [
        chat(stream=True, stream_options={"include_usage": True}),  # the caller asked already
        chat(),  # a plain reply reports usage anyway
    ],
    ids=["asked", "plain"],
)
async def test_a_call_that_will_report_usage_is_left_as_it_came(
    tmp_path: Path, rec: Recorded, call: Call
) -> None:
    gen = limited(tmp_path, TOKENS)
    ex = on(gen, call)
    await Limits(LimitStores(), rec.telemetry.instruments).request(ex)
    assert ex.admission is not None and not ex.drop_usage_chunk
    assert call.wire() is call.raw


async def test_a_request_rule_alone_does_not_ask_a_stream_for_usage(
    tmp_path: Path, rec: Recorded
) -> None:
    gen = limited(tmp_path, ONE_A_MINUTE)
    call = chat(stream=True)
    ex = on(gen, call)
    await Limits(LimitStores(), rec.telemetry.instruments).request(ex)
    assert ex.admission is not None and not ex.drop_usage_chunk
    assert call.wire() is call.raw


async def test_settlement_refunds_what_a_reply_did_not_use(tmp_path: Path, rec: Recorded) -> None:
    gen = limited(tmp_path, {"id": "small", "tokens": {"limit": 300, "per": "1h"}})
    limits = Limits(LimitStores(), rec.telemetry.instruments)
    first = on(gen, chat(max_tokens=200))  # reserves its estimate plus 200 output tokens
    await limits.request(first)
    with pytest.raises(LimitRefused):
        await limits.request(on(gen, chat(max_tokens=200), "decision-2"))
    # The reply reports five tokens in all: the rest of the reservation comes back when
    # the chain completes the call, with the usage read from the reply's body.
    assert first.codec is not None
    reply = first.codec.reply_view("/v1/chat/completions", chat_reply())
    rec.chain(gen, limits).complete_now(first, Outcome(200, body=reply))
    third = on(gen, chat(max_tokens=200), "decision-3")
    await limits.request(third)
    assert third.admission is not None


# --- account -------------------------------------------------------------------------------


async def accounted(tmp_path: Path, rec: Recorded) -> tuple[Exchange, Account, DecisionLog, Path]:
    """A call that ran identify → authorize → route → input guards, ready to be accounted."""
    email = {"id": "email-in", "kind": "pii", "types": ["EMAIL"], "action": "redact"}
    gen = compile_bundle(tmp_path, base_bundle(guards={"input": [email]}))
    ex = exchange(gen, chat(text="mail jo@example.com"))
    rec.root(ex)
    m, spans = rec.telemetry.instruments, rec.spans
    chain = rec.chain(
        gen,
        Identify(POD, recording=True),
        Authorize(m, recording=True),
        RouteStage(recording=True),
        InputGuards(spans),
    )
    await chain.request(ex)
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(str(path))
    return ex, Account(m, log, recording=True), log, path


def lines(log: DecisionLog, path: Path) -> list[dict[str, Any]]:
    log.close()
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def test_account_counts_logs_once_and_ends_the_span(tmp_path: Path, rec: Recorded) -> None:
    ex, account, log, path = await accounted(tmp_path, rec)
    usage = Usage("chatcmpl-1", "mock-echo", 12, 7, ["stop"])
    account.complete(ex, Outcome(200, usage=usage, elapsed=0.25))
    root = rec.finished("chat mock-echo")  # ended by account, once
    assert root.attributes is not None
    assert root.attributes["http.response.status_code"] == 200
    assert root.attributes["gen_ai.usage.input_tokens"] == 12
    assert root.attributes["gen_ai.usage.output_tokens"] == 7
    assert root.attributes["gen_ai.response.model"] == "mock-echo"
    assert root.attributes["gen_ai.response.id"] == "chatcmpl-1"
    assert root.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert "error.type" not in root.attributes
    assert root.status.status_code is StatusCode.UNSET
    metrics = rec.metrics()
    assert (
        'sidecar_requests_total{http_response_status_code="200",sidecar_route="mock-route",'
        'sidecar_upstream="mock"} 1.0'
    ) in metrics
    assert (
        'sidecar_guard_findings_total{action="redact",sidecar_guard_id="email-in",type="EMAIL"} 1.0'
        in metrics
    )
    token_counts = [
        line for line in metrics.splitlines() if line.startswith("gen_ai_client_token_usage_count")
    ]
    assert len(token_counts) == 2  # input and output
    assert any(
        line.startswith("gen_ai_client_operation_duration_seconds_count")
        for line in metrics.splitlines()
    )
    [line] = lines(log, path)
    assert line["decision_id"] == "decision-1" and line["bundle_revision"] == "stages-1"
    assert line["principal"] == "agent-7" and line["tenant"] == "acme"
    assert line["roles"] == ["agent"] and line["identity_via"] == "pod"
    assert line["action"] == "llm.chat"
    assert line["resource"] == {"type": "Model", "id": "mock-echo"}
    assert line["result"] == "allow" and line["policies"] == ["role:agent[0]"]
    assert line["authz_us"] == round(ex.timings["authorize"] * 1e6, 1) > 0
    assert line["status"] == 200 and line["error_type"] is None
    assert line["upstream"] == "mock" and line["stream"] is False
    assert line["usage"] == {"input_tokens": 12, "output_tokens": 7}
    assert line["duration_ms"] == 250.0
    assert line["trace_id"] == format(root.context.trace_id, "032x")
    assert [g["guard"] for g in line["guards"]] == ["email-in"]
    assert "jo@example.com" not in path.read_text()
    assert "content" not in line and "limits" not in line


async def test_account_marks_a_failed_call_on_its_span(tmp_path: Path, rec: Recorded) -> None:
    ex, account, log, path = await accounted(tmp_path, rec)
    account.complete(ex, Outcome(502, error_type="bad_gateway", elapsed=0.01))
    root = rec.finished("chat mock-echo")
    assert root.attributes is not None
    assert root.attributes["error.type"] == "bad_gateway"
    assert root.attributes["http.response.status_code"] == 502
    assert root.status.status_code is StatusCode.ERROR
    [line] = lines(log, path)
    assert line["status"] == 502 and line["error_type"] == "bad_gateway"


def test_the_log_entry_of_a_call_refused_before_authorization(tmp_path: Path) -> None:
    gen = compile_bundle(tmp_path, base_bundle())
    ex = exchange(gen, chat())
    assert ex.call is not None
    entry = log_entry(ex, ex.call, Outcome(401, error_type="unauthenticated"), False)
    assert entry["result"] == "unauthenticated"
    assert entry["principal"] is None and entry["roles"] == [] and entry["policies"] == []
    assert entry["trace_id"] is None and entry["upstream"] is None
    assert entry["usage"] == {"input_tokens": None, "output_tokens": None}


async def test_the_log_entry_says_what_limits_decided(tmp_path: Path, rec: Recorded) -> None:
    gen = limited(tmp_path, ONE_A_MINUTE)
    limits = Limits(LimitStores(), rec.telemetry.instruments)
    admitted, refused = on(gen, chat()), on(gen, chat(), "decision-2")
    await limits.request(admitted)
    with pytest.raises(LimitRefused):
        await limits.request(refused)
    for ex, limits_field in (
        (admitted, {"rules": ["per-tenant"], "result": "admitted"}),
        (refused, {"result": "rejected", "rule": "per-tenant"}),
    ):
        assert ex.call is not None
        assert log_entry(ex, ex.call, Outcome(200), False)["limits"] == limits_field


def test_the_log_entry_carries_content_only_when_asked(tmp_path: Path) -> None:
    gen = compile_bundle(tmp_path, base_bundle())
    ex = on(gen, chat(text="what is the capital of France?"))
    assert ex.call is not None
    assert "content" not in log_entry(ex, ex.call, Outcome(200), False)
    content = log_entry(ex, ex.call, Outcome(200), True)["content"]
    assert "capital of France" in orjson.dumps(content).decode()


async def test_a_listing_records_no_genai_operation(tmp_path: Path, rec: Recorded) -> None:
    gen = compile_bundle(tmp_path, base_bundle())
    call = chat()
    call.operation = ""  # a model listing is no GenAI operation
    ex = on(gen, call)
    Account(rec.telemetry.instruments, DecisionLog("none"), recording=True).complete(
        ex, Outcome(200, usage=Usage(input_tokens=1), elapsed=0.01)
    )
    metrics = rec.metrics()
    assert not any(
        line.startswith("gen_ai_client_operation_duration_seconds_count")
        for line in metrics.splitlines()
    )
    assert 'http_response_status_code="200",sidecar_route="",sidecar_upstream=""} 1.0' in metrics
