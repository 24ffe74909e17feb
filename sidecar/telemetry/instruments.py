"""The metric instruments, created once per process and shared by all stages.

Each instrument has a fixed, ordered set of attributes; callers pass their
values as a tuple in that order ("" when absent).
"""

from __future__ import annotations

from sidecar.telemetry import names
from sidecar.telemetry.metrics import MetricFactory

OPERATION_ATTRS = (
    names.GEN_AI_OPERATION_NAME,
    names.GEN_AI_PROVIDER_NAME,
    names.GEN_AI_REQUEST_MODEL,
    names.GEN_AI_RESPONSE_MODEL,
    names.SERVER_ADDRESS,
    names.ERROR_TYPE,
)
TOKEN_ATTRS = (*OPERATION_ATTRS, names.GEN_AI_TOKEN_TYPE)
FIRST_CHUNK_ATTRS = (
    names.GEN_AI_OPERATION_NAME,
    names.GEN_AI_PROVIDER_NAME,
    names.GEN_AI_REQUEST_MODEL,
    names.SERVER_ADDRESS,
)
REQUEST_ATTRS = (names.SIDECAR_ROUTE, names.SIDECAR_UPSTREAM, names.HTTP_RESPONSE_STATUS_CODE)


class Instruments:
    def __init__(self, factory: MetricFactory) -> None:
        self.operation_duration = factory.histogram(
            names.METRIC_OPERATION_DURATION,
            "s",
            "GenAI operation duration, as the agent sees it through the sidecar.",
            OPERATION_ATTRS,
            names.DURATION_BUCKETS,
        )
        self.token_usage = factory.histogram(
            names.METRIC_TOKEN_USAGE,
            "{token}",
            "Input and output tokens used, as reported by the provider.",
            TOKEN_ATTRS,
            [float(b) for b in names.TOKEN_BUCKETS],
        )
        self.time_to_first_chunk = factory.histogram(
            names.METRIC_TIME_TO_FIRST_CHUNK,
            "s",
            "Time from request to the first streamed chunk of the response.",
            FIRST_CHUNK_ATTRS,
            names.DURATION_BUCKETS,
        )
        self.requests = factory.counter(
            names.METRIC_REQUESTS,
            "{request}",
            "Proxied requests by route, upstream and HTTP status.",
            REQUEST_ATTRS,
        )
        self.decisions = factory.counter(
            names.METRIC_DECISIONS,
            "{decision}",
            "Authorization decisions by action and result (allow, deny).",
            (names.SIDECAR_ACTION, "result"),
        )
        self.guard_findings = factory.counter(
            names.METRIC_GUARD_FINDINGS,
            "{finding}",
            "Guard findings by guard id, finding type and the action taken.",
            (names.SIDECAR_GUARD_ID, "type", "action"),
        )
        self.decision_log_dropped = factory.counter(
            names.METRIC_DECISION_LOG_DROPPED,
            "{line}",
            "Decision log lines dropped because the writer fell behind or failed.",
            (),
        )
        self.limit_decisions = factory.counter(
            names.METRIC_LIMIT_DECISIONS,
            "{decision}",
            "Limit checks by rule and result (admitted, rejected).",
            (names.SIDECAR_LIMIT_ID, "result"),
        )
        self.limit_store_errors = factory.counter(
            names.METRIC_LIMIT_STORE_ERRORS,
            "{error}",
            "Limit checks or settlements the shared store (Redis) did not answer in time.",
            ("store",),
        )
        self.budget_remaining = factory.gauge(
            names.METRIC_BUDGET_REMAINING,
            "1",
            "Tokens or dollars a budget had left after its last admitted call, by rule and key.",
            (names.SIDECAR_LIMIT_ID, "key", "unit"),
        )
        self.settlements_pending = factory.gauge(
            names.METRIC_SETTLEMENTS_PENDING,
            "{settlement}",
            "Limit settlements sent to the shared store (Redis) and not answered yet.",
            (),
        )
        self.retries = factory.counter(
            names.METRIC_RETRIES,
            "{retry}",
            "Upstream attempts retried, by upstream and reason (status, connect, reset, timeout).",
            (names.SIDECAR_UPSTREAM, "reason"),
        )
        self.fallbacks = factory.counter(
            names.METRIC_FALLBACKS,
            "{fallback}",
            "Calls sent on to a fallback upstream, by route and the upstream that took them.",
            (names.SIDECAR_ROUTE, names.SIDECAR_UPSTREAM),
        )
        self.hedges = factory.counter(
            names.METRIC_HEDGES,
            "{hedge}",
            "Hedged second attempts started, by route.",
            (names.SIDECAR_ROUTE,),
        )
        self.breaker_state = factory.gauge(
            names.METRIC_BREAKER_STATE,
            "1",
            "Circuit breaker state by upstream: 0 closed, 1 half-open, 2 open.",
            (names.SIDECAR_UPSTREAM,),
        )
        self.bundle_reloads = factory.counter(
            names.METRIC_BUNDLE_RELOADS,
            "{reload}",
            "Bundle load attempts by result: success, unchanged or error.",
            ("result",),
        )
