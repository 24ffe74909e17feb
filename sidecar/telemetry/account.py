"""The account stage: metrics, the decision log and the call's span, once it has ended.

Runs last among the completion hooks, after settlement, in the loop turn
after the reply went out. Every call that reached a chain gets exactly one
decision-log line and one end of its span, however it ended.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.trace import Span, Status, StatusCode

from sidecar.call import Call, Usage
from sidecar.chain.exchange import Exchange, Outcome
from sidecar.chain.stage import Stage
from sidecar.guards.stage import log_content, log_entries
from sidecar.telemetry import names
from sidecar.telemetry.decision_log import DecisionLog
from sidecar.telemetry.instruments import Instruments


class Account(Stage):
    name = "account"

    def __init__(
        self, instruments: Instruments, decision_log: DecisionLog, recording: bool
    ) -> None:
        self._m = instruments
        self.decision_log = decision_log
        self.recording = recording

    def count(self, ex: Exchange, status: int) -> None:
        """One more request answered, by route, upstream and status."""
        self._m.requests.add(
            1,
            (
                ex.route.name if ex.route else "",
                ex.upstream.name if ex.upstream else "",
                str(status),
            ),
        )

    def complete(self, ex: Exchange, outcome: Outcome) -> None:
        assert ex.call is not None
        call, usage, status, error_type = ex.call, outcome.usage, outcome.status, outcome.error_type
        up = ex.upstream
        attrs = (
            call.operation,
            up.provider_name if up else "",
            (call.model or "") if up else "",  # unrouted names stay out of label sets
            usage.response_model or "",
            up.host if up else "",
            error_type or "",
        )
        if call.operation:  # a GenAI operation (a listing is none)
            self._m.operation_duration.record(outcome.elapsed, attrs)
            if usage.input_tokens is not None:
                self._m.token_usage.record(usage.input_tokens, (*attrs, "input"))
            if usage.output_tokens is not None:
                self._m.token_usage.record(usage.output_tokens, (*attrs, "output"))
        self.count(ex, status)
        if ex.guards is not None:
            for hit in ex.guards.hits:
                self._m.guard_findings.add(1, (hit.guard, hit.type, hit.action))
        if self.decision_log.enabled:
            self.decision_log.record(
                log_entry(ex, call, outcome, self.decision_log.include_content)
            )
        span = ex.span
        if span is None:
            return
        if self.recording:
            _describe(span, usage, status, error_type)
        span.end()


def log_entry(ex: Exchange, call: Call, outcome: Outcome, include_content: bool) -> dict[str, Any]:
    """The decision-log line of one call (schema: `telemetry/decision_log.py`)."""
    p, d, usage, status = ex.principal, ex.decision, outcome.usage, outcome.status
    if d is not None:
        result = "allow" if d.allowed else "deny"
    else:
        result = "unauthenticated" if status == 401 else "error"
    context = ex.span.get_span_context() if ex.span is not None else None
    entry: dict[str, Any] = {
        "ts": _iso_now(),
        "decision_id": ex.decision_id,
        "trace_id": format(context.trace_id, "032x") if context else None,
        "span_id": format(context.span_id, "016x") if context else None,
        "bundle_revision": ex.revision,
        "principal": p.id if p else None,
        "tenant": p.tenant if p else None,
        "agent": p.agent if p else None,
        "user": (p.user or None) if p else None,
        "roles": sorted(p.roles) if p else [],
        "identity_via": p.via if p else None,
        "action": call.action,
        "resource": {"type": call.resource.type, "id": call.resource.id or None},
        "result": result,
        "policies": list(d.policies) if d else [],
        "reasons": list(d.errors) if d else [],
        "authz_us": round(ex.timings.get("authorize", 0.0) * 1e6, 1),
        "status": status,
        "error_type": outcome.error_type,
        "upstream": ex.upstream.name if ex.upstream else None,
        "stream": call.stream,
        "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
        "duration_ms": round(outcome.elapsed * 1000, 3),
    }
    if ex.guards is not None and ex.guards.hits:
        entry["guards"] = log_entries(ex.guards)
    if ex.admission is not None:
        adm = ex.admission
        entry["limits"] = {"rules": list(adm.rules), "result": "admitted"}
        if adm.store_error:
            entry["limits"]["store_error"] = adm.store_error
    elif ex.limit_refused is not None:
        entry["limits"] = {"result": "rejected", "rule": ex.limit_refused}
    if include_content:
        entry["content"] = log_content(call.texts, ex.guards)
    return entry


_second: list[Any] = [0, ""]  # the last whole second formatted, reused within it


def _iso_now() -> str:
    now = time.time()
    whole = int(now)
    if _second[0] != whole:
        _second[0], _second[1] = whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{_second[1]}.{int((now - whole) * 1000):03d}Z"


def _describe(span: Span, usage: Usage, status: int, error_type: str | None) -> None:
    span.set_attribute(names.HTTP_RESPONSE_STATUS_CODE, status)
    if usage.response_model:
        span.set_attribute(names.GEN_AI_RESPONSE_MODEL, usage.response_model)
    if usage.response_id:
        span.set_attribute(names.GEN_AI_RESPONSE_ID, usage.response_id)
    if usage.finish_reasons:
        span.set_attribute(names.GEN_AI_RESPONSE_FINISH_REASONS, usage.finish_reasons)
    if usage.input_tokens is not None:
        span.set_attribute(names.GEN_AI_USAGE_INPUT_TOKENS, usage.input_tokens)
    if usage.output_tokens is not None:
        span.set_attribute(names.GEN_AI_USAGE_OUTPUT_TOKENS, usage.output_tokens)
    if error_type:
        span.set_attribute(names.ERROR_TYPE, error_type)
        span.set_status(Status(StatusCode.ERROR))
