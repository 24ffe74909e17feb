"""Spans and metrics of one call, read back from the SDK in memory and /metrics."""

from __future__ import annotations

import re

import aiohttp
import openai
from opentelemetry.trace import SpanKind

from fakes.upstream import FakeUpstream
from integration.conftest import MakeSidecar, openai_bundle

AGENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
AGENT_PARENT = "00f067aa0ba902b7"


async def test_call_span_continues_agent_trace_and_upstream_continues_ours(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(openai_bundle(fake))
    client = openai.AsyncOpenAI(
        base_url=f"{sc.base}/v1",
        api_key="agent",
        default_headers={"traceparent": f"00-{AGENT_TRACE}-{AGENT_PARENT}-01"},
    )
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "trace me"}]
    )
    completion = raw.parse()
    call = await sc.wait_for_span("chat gpt-4o")
    attempt = await sc.wait_for_span("POST fake")
    assert call.kind is SpanKind.CLIENT
    assert call.context is not None and attempt.context is not None
    assert format(call.context.trace_id, "032x") == AGENT_TRACE
    assert call.parent is not None and format(call.parent.span_id, "016x") == AGENT_PARENT
    assert attempt.parent is not None and attempt.parent.span_id == call.context.span_id
    attrs = dict(call.attributes or {})
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "gpt-4o"
    assert attrs["gen_ai.response.model"] == completion.model
    assert attrs["gen_ai.response.id"] == completion.id
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert completion.usage is not None
    assert attrs["gen_ai.usage.input_tokens"] == completion.usage.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens
    assert attrs["server.address"] == "127.0.0.1"
    assert attrs["sidecar.decision.id"] == raw.headers["x-sidecar-decision-id"]
    assert attrs["sidecar.bundle.revision"] == "r1"
    assert attrs["sidecar.decision"] == "allow"
    assert attrs["sidecar.decision.policies"] == ("role:agent[0]",)
    assert "error.type" not in attrs
    authorize = await sc.wait_for_span("policy.authorize")
    assert authorize.parent is not None and authorize.parent.span_id == call.context.span_id
    # The upstream saw a traceparent naming our attempt span as its parent.
    seen = fake.last_request.headers["traceparent"]
    _, trace_id, parent_id, _ = seen.split("-")
    assert trace_id == AGENT_TRACE
    assert parent_id == format(attempt.context.span_id, "016x")
    assert dict(attempt.attributes or {})["http.response.status_code"] == 200


async def test_streamed_call_span_has_usage_and_metrics_show_it(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(openai_bundle(fake))
    client = openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key="agent")
    stream = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "count my tokens"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = None
    async for chunk in stream:
        usage = chunk.usage or usage
    assert usage is not None
    call = await sc.wait_for_span("chat gpt-4o-mini")
    attrs = dict(call.attributes or {})
    assert attrs["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == usage.completion_tokens

    async with aiohttp.ClientSession() as http, http.get(f"{sc.admin}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    assert "gen_ai_client_operation_duration_seconds_bucket" in text
    assert 'le="0.01"' in text and 'le="81.92"' in text  # the GenAI spec's buckets
    assert "gen_ai_client_token_usage" in text and 'gen_ai_token_type="output"' in text
    assert "gen_ai_client_operation_time_to_first_chunk" in text
    assert 'sidecar_route="gpt"' in text and 'http_response_status_code="200"' in text
    assert re.search(
        r'^sidecar_bundle_reloads_total\{[^}]*result="success"[^}]*\} 1\.0$', text, re.M
    )


async def test_error_call_span_marks_error_type(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(openai_bundle(fake))
    fake.fail_next(500)
    client = openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key="agent", max_retries=0)
    try:
        await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    except openai.InternalServerError:
        pass
    else:
        raise AssertionError("the upstream's 500 must reach the SDK")
    call = await sc.wait_for_span("chat gpt-4o")
    assert dict(call.attributes or {})["error.type"] == "500"


async def test_without_an_exporter_the_agents_context_passes_through_unrecorded(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(openai_bundle(fake), record_spans=False)
    assert not sc.telemetry.recording
    client = openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key="agent")
    sent = f"00-{AGENT_TRACE}-{AGENT_PARENT}-01"
    await client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"traceparent": sent},
    )
    # Nothing recorded, so the provider's spans hang off the agent's span directly.
    assert fake.last_request.headers["traceparent"] == sent
    await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}]
    )
    minted = fake.last_request.headers["traceparent"]
    version, trace_id, span_id, flags = minted.split("-")
    assert (version, flags) == ("00", "00")
    assert int(trace_id, 16) and int(span_id, 16) and trace_id != AGENT_TRACE
    assert sc.finished() == []
