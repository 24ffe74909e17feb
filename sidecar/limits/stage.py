"""The limits stage: admit the call against the rules it meets, settle once it ends.

Admission reserves before the call goes anywhere; settlement, in the
completion hook, charges what the provider reported (or the text it
produced, when it reported nothing) and releases concurrency leases — also
for a call refused or cut short after admission.
"""

from __future__ import annotations

from opentelemetry.trace import Span

from sidecar.bundle.snapshot import Snapshot
from sidecar.chain.exchange import Exchange, Outcome
from sidecar.chain.stage import Stage, StreamHook
from sidecar.errors import SidecarError
from sidecar.events import StreamEvent
from sidecar.limits.headers import rate_limit_headers
from sidecar.limits.limiter import Admission, Limiter, LimitRefused, LimitStores
from sidecar.telemetry import names
from sidecar.telemetry.instruments import Instruments


class Limits(Stage):
    name = "limits"
    span_name = names.SPAN_LIMITS_CHECK

    def __init__(self, stores: LimitStores, instruments: Instruments) -> None:
        m = instruments
        self.limiter = Limiter(
            stores,
            on_decision=lambda rule, result: m.limit_decisions.add(1, (rule, result)),
            on_store_error=lambda store: m.limit_store_errors.add(1, (store,)),
            on_remaining=lambda rule, key, unit, left: m.budget_remaining.set(
                left, (rule, key, unit)
            ),
        )

    def applies(self, snapshot: Snapshot) -> bool:
        return not snapshot.limits.empty

    async def request(self, ex: Exchange) -> None:
        assert ex.gen is not None and ex.call is not None and ex.principal is not None
        call = ex.call
        route = ex.route.name if ex.route is not None else ""
        try:
            adm = await self.limiter.admit(
                ex.gen.snapshot.limits, call, ex.principal, route, ex.decision_id
            )
        except LimitRefused as err:
            ex.limit_headers = rate_limit_headers(err.entries, call.provider)
            ex.limit_refused = err.rule
            raise
        if adm is None:
            return
        ex.admission = adm
        ex.limit_headers = rate_limit_headers(adm.entries(), call.provider)
        # Settling needs the real usage: ask for it, and hide it from a caller who did
        # not ask (the relay drops it).
        codec = call.codec
        if adm.spends and call.stream and codec and codec.ask_usage(call.path, call.body):
            call.edited()
            ex.drop_usage_chunk = True

    def describe(self, ex: Exchange, span: Span, error: SidecarError | None) -> None:
        adm = ex.admission
        if isinstance(error, LimitRefused):
            result = "rejected"
            span.set_attribute(names.SIDECAR_LIMIT_RULES, [error.rule])
            if error.store_error:
                span.set_attribute(names.SIDECAR_LIMIT_STORE_ERROR, error.store_error)
        elif error is not None:
            result = "error"
        elif adm is None:
            result = "none"
        else:
            result = "admitted"
            span.set_attribute(names.SIDECAR_LIMIT_RULES, list(adm.rules))
            if adm.store_error:
                span.set_attribute(names.SIDECAR_LIMIT_STORE_ERROR, adm.store_error)
        span.set_attribute(names.SIDECAR_LIMIT_RESULT, result)

    def stream(self, ex: Exchange, ok: bool) -> StreamHook | None:
        adm = ex.admission
        spend = adm if adm is not None and adm.spends else None
        drop = ex.drop_usage_chunk and ok
        return _SpendHook(spend, drop) if spend is not None or drop else None

    def complete(self, ex: Exchange, outcome: Outcome) -> None:
        adm = ex.admission
        if adm is None:
            return
        if outcome.body is not None and outcome.usage.output_tokens is None and adm.spends:
            # No usage reported: charge the reply's text, as for a stream.
            adm.produced_chars = outcome.body.text_chars
        self.limiter.settle(adm, outcome.usage, outcome.status)


class _SpendHook(StreamHook):
    """Counts the text a stream generates (for settling a stream cut short) and drops
    the usage-only chunk the sidecar asked for on a caller's behalf."""

    def __init__(self, spend: Admission | None, drop: bool) -> None:
        self.spend = spend
        self.drop = drop

    def events(self, events: list[StreamEvent]) -> list[StreamEvent]:
        spend = self.spend
        if spend is not None:
            # What the model generated, before any redaction: what the provider bills.
            for event in events:
                spend.produced_chars += event.text_chars
        if self.drop:
            _drop_usage_chunks(events)
        return events

    def close(self, events: list[StreamEvent]) -> list[StreamEvent]:
        if self.drop:
            _drop_usage_chunks(events)
        return events


def _drop_usage_chunks(events: list[StreamEvent]) -> None:
    for event in events:
        if event.data is not None and b'"usage"' in event.data and event.usage_only:
            event.drop()
