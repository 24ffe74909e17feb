"""The LLM surface's chains, declared once and built per bundle generation.

An LLM call runs identify → authorize → tool offer → route → tool-server
guards → input guards → limits, then the forward handler; its plain reply
passes the tool-call gate and the output guards (a stream's, in the relay);
limits settle and the account stage closes the books once it has ended. A
model listing runs identify, then the listing, then account. The stages are
in their own packages; this module only puts them in order and renders what
refuses a call in the caller's API.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from opentelemetry import propagate
from opentelemetry.trace import SpanKind

from sidecar.adapters.base import Adapter
from sidecar.authz.authorize import Decision
from sidecar.authz.listing import permitted_models
from sidecar.authz.stage import Authorize
from sidecar.authz.tool_stages import ToolCallGate, ToolOffer
from sidecar.bounds import ResponseBounds
from sidecar.bundle.store import Generation
from sidecar.call import Call
from sidecar.chain.exchange import Exchange, Outcome, Verdict
from sidecar.chain.runner import Chain, Spans
from sidecar.chain.stage import Stage
from sidecar.errors import ErrorKind, SidecarError
from sidecar.forward.executor import Executor
from sidecar.forward.route import RouteStage
from sidecar.forward.stage import Forward
from sidecar.guards.stages import InputGuards, OutputGuards, ToolCallGuards, ToolServerGuards
from sidecar.identity.principal import PodIdentity
from sidecar.identity.stage import Identify
from sidecar.limits.limiter import LimitStores
from sidecar.limits.stage import Limits
from sidecar.replies import Reply, StreamReply
from sidecar.resilience.breaker import CLOSED, HALF_OPEN, OPEN, Breaker
from sidecar.resilience.state import ResilienceState
from sidecar.telemetry import names
from sidecar.telemetry.account import Account
from sidecar.telemetry.decision_log import DecisionLog
from sidecar.telemetry.instruments import Instruments
from sidecar.telemetry.setup import Telemetry

LLM_CHAIN = "llm"
MODELS_CHAIN = "models"
TOOL_CHECK_CHAIN = "tool_check"


class Pipeline:
    def __init__(
        self,
        telemetry: Telemetry,
        pod: PodIdentity,
        decision_log: DecisionLog | None = None,
        limit_stores: LimitStores | None = None,
        resilience: ResilienceState | None = None,
        bounds: ResponseBounds | None = None,
    ) -> None:
        m, recording = telemetry.instruments, telemetry.recording
        self.pod = pod
        self.bounds = bounds or ResponseBounds()
        self.decision_log = decision_log or DecisionLog("none")
        self.limit_stores = limit_stores or LimitStores()
        self.resilience = resilience or ResilienceState()
        self.spans = Spans(telemetry.tracer, recording)
        self._tracer = telemetry.tracer
        self._recording = recording
        self.identify = Identify(pod, recording)
        self.account = Account(m, self.decision_log, recording)
        self.limits = Limits(self.limit_stores, m)
        self.forward = Forward(
            Executor(self.resilience, _BreakerGauge(m)), self.bounds, m, self.spans
        )
        self.declared: dict[str, Sequence[Stage]] = {
            LLM_CHAIN: (
                self.identify,
                Authorize(m, recording),
                ToolOffer(),
                RouteStage(recording),
                ToolServerGuards(self.spans),
                InputGuards(self.spans),
                self.limits,
                ToolCallGate(),
                OutputGuards(self.spans),
                self.account,
            ),
            MODELS_CHAIN: (self.identify, self.account),
            # A tool call checked, not carried: the decision is the answer.
            TOOL_CHECK_CHAIN: (
                self.identify,
                Authorize(m, recording),
                ToolCallGuards(self.spans),
                self.limits,
                self.account,
            ),
        }

    def chain(self, gen: Generation, name: str) -> Chain:
        """The chain `name` as this generation's bundle uses it, built on first use."""
        chain = gen.chains.get(name)
        if chain is None:
            chain = gen.chains[name] = Chain(self.declared[name], gen.snapshot, self.spans)
        return chain

    async def llm(
        self, gen: Generation, adapter: Adapter, call: Call, ex: Exchange
    ) -> Reply | StreamReply:
        ex.gen, ex.call, ex.codec = gen, call, adapter
        chain = self.chain(gen, LLM_CHAIN)
        headers = call.headers
        parent = propagate.extract(headers) if "traceparent" in headers else None
        ex.span = self._tracer.start_span(
            f"{call.operation} {call.model}",
            context=parent,
            kind=SpanKind.CLIENT,
            attributes={
                names.GEN_AI_OPERATION_NAME: call.operation,
                names.GEN_AI_REQUEST_MODEL: call.model or "",
                names.SIDECAR_ACTION: call.action,
                names.SIDECAR_DECISION_ID: ex.decision_id,
                names.SIDECAR_BUNDLE_REVISION: ex.revision,
            }
            if self._recording
            else None,
        )
        try:
            await chain.request(ex)
            return await self.forward.handle(ex, chain)
        except SidecarError as err:
            reply = self.error(adapter, err, ex)
            # A reply refused after the provider made it (a guard, the tool gate) still
            # cost what the provider reported: account for it.
            outcome = Outcome(reply.status, error_type=err.kind.value, body=ex.reply_body)
            chain.complete(ex, outcome)
            return reply
        except BaseException as exc:
            chain.complete(ex, Outcome(500, error_type=type(exc).__qualname__))
            raise

    async def models(
        self,
        gen: Generation,
        adapter: Adapter,
        call: Call,
        ex: Exchange,
        render: Callable[[list[str], bool], bytes],
    ) -> Reply:
        """A model listing (or one model, when `call.resource.id` names it), from the bundle.

        Only the models the caller may use are listed; a model it may not use is
        as unknown as one the bundle lacks, so the listing is no oracle.
        """
        ex.gen, ex.call, ex.codec = gen, call, adapter
        chain = self.chain(gen, MODELS_CHAIN)
        ex.span = self._tracer.start_span(
            call.action,
            kind=SpanKind.SERVER,
            attributes={
                names.SIDECAR_ACTION: call.action,
                names.SIDECAR_DECISION_ID: ex.decision_id,
                names.SIDECAR_BUNDLE_REVISION: ex.revision,
            }
            if self._recording
            else None,
        )
        try:
            await chain.request(ex)
            assert ex.principal is not None
            allowed = permitted_models(gen.snapshot, ex.principal)
            wanted = call.resource.id
            if wanted and wanted not in allowed:
                ex.decision = Decision(False, ())
                raise SidecarError(
                    ErrorKind.NOT_FOUND,
                    f"model '{wanted}' is not offered by bundle revision {ex.revision}",
                    code="model_not_found",
                )
            ex.decision = Decision(True, ())
            body = render([wanted] if wanted else allowed, bool(wanted))
        except SidecarError as err:
            reply = self.error(adapter, err, ex)
            chain.complete(ex, Outcome(reply.status, error_type=err.kind.value))
            return reply
        reply = Reply(200, ex.sidecar_headers(), body)
        reply.headers["content-type"] = "application/json"
        chain.complete(ex, Outcome(200))
        return reply

    async def check(self, gen: Generation, call: Call, ex: Exchange) -> Verdict:
        """Run the tool-check chain over a `tool.call`: a verdict, nothing forwarded.

        The surface that asked renders the verdict in its own protocol; the
        decision log, the metrics and the spans are the same as for any call.
        """
        ex.gen, ex.call = gen, call
        chain = self.chain(gen, TOOL_CHECK_CHAIN)
        headers = call.headers
        parent = propagate.extract(headers) if "traceparent" in headers else None
        ex.span = self._tracer.start_span(
            names.SPAN_TOOL.format(tool=call.resource.id),
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes={
                names.GEN_AI_OPERATION_NAME: call.operation,
                names.GEN_AI_TOOL_NAME: call.resource.id,
                names.SIDECAR_ACTION: call.action,
                names.SIDECAR_DECISION_ID: ex.decision_id,
                names.SIDECAR_BUNDLE_REVISION: ex.revision,
            }
            if self._recording
            else None,
        )
        error: SidecarError | None = None
        try:
            await chain.request(ex)
        except SidecarError as err:
            error = err
        except BaseException as exc:
            chain.complete(ex, Outcome(500, error_type=type(exc).__qualname__))
            raise
        status = error.status if error is not None else 200
        chain.complete(ex, Outcome(status, error_type=error.kind.value if error else None))
        return Verdict(
            error is None,
            ex.decision_id,
            ex.revision,
            ex.decision.policies if ex.decision is not None else (),
            error,
            ex.sidecar_headers(),
        )

    def error(self, adapter: Adapter, err: SidecarError, ex: Exchange) -> Reply:
        headers = ex.sidecar_headers()
        headers["content-type"] = "application/json"
        if err.retry_after is not None:
            headers["retry-after"] = str(max(0, math.ceil(err.retry_after)))
            if err.kind is ErrorKind.RATE_LIMITED:
                headers["retry-after-ms"] = str(max(0, math.ceil(err.retry_after * 1000)))
        if err.retryable is not None:
            headers["x-should-retry"] = "true" if err.retryable else "false"
        return Reply(err.status, headers, adapter.error_body(err))

    def count(self, ex: Exchange, status: int) -> None:
        """Count a request refused before it reached a chain (not ready, unparseable)."""
        self.account.count(ex, status)


_BREAKER_CODES = {CLOSED: 0.0, HALF_OPEN: 1.0, OPEN: 2.0}


class _BreakerGauge:
    """The executor's events, as metrics; a breaker's state only when it changed."""

    def __init__(self, instruments: Instruments) -> None:
        self._m = instruments
        self._published: dict[str, str] = {}  # breaker states last sent to the gauge

    def retried(self, upstream: str, reason: str) -> None:
        self._m.retries.add(1, (upstream, reason))

    def fell_back(self, route: str, upstream: str) -> None:
        self._m.fallbacks.add(1, (route, upstream))

    def hedged(self, route: str) -> None:
        self._m.hedges.add(1, (route,))

    def breaker_changed(self, breaker: Breaker) -> None:
        if self._published.get(breaker.name) != breaker.state:
            self._published[breaker.name] = breaker.state
            self._m.breaker_state.set(_BREAKER_CODES[breaker.state], (breaker.name,))
