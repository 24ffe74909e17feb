"""The pipeline one LLM call passes: route, forward, observe the response, account.

Stages here know nothing of HTTP servers: the server hands in the call and
the request headers, and gets back a `Reply` or a `StreamReply` to write.
Identity, authorization, guards and limits slot in before `forward`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from multidict import CIMultiDict
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from sidecar.adapters.base import Adapter
from sidecar.adapters.output import StreamEditor
from sidecar.authz.authorize import Decision
from sidecar.authz.context import CallContext
from sidecar.authz.tools import ToolGate, response_violations
from sidecar.bounds import ResponseBounds, read_bounded
from sidecar.bundle.snapshot import Route, UpstreamSpec
from sidecar.bundle.store import Generation
from sidecar.call import Call, Usage
from sidecar.error_pages import is_api_error, page_error
from sidecar.errors import ErrorKind, SidecarError
from sidecar.forward.attempt import Answer, UpstreamAttempt, end_attempt, end_error, streams
from sidecar.forward.executor import Executor, Failure, targets_for, total_timeout
from sidecar.forward.failures import upstream_failure
from sidecar.forward.headers import downstream_headers
from sidecar.forward.relay import ResponseStages, relay
from sidecar.guards.servers import check_server_urls
from sidecar.guards.stage import (
    OutputFilter,
    Record,
    Subject,
    check_input,
    check_output,
    log_content,
    log_entries,
)
from sidecar.identity.principal import PodIdentity, Principal
from sidecar.identity.resolve import identify, identify_with_jwt
from sidecar.limits.headers import rate_limit_headers
from sidecar.limits.limiter import Admission, Limiter, LimitRefused, LimitStores
from sidecar.limits.streams import streamed_text_chars
from sidecar.replies import Reply, StreamReply
from sidecar.resilience.breaker import CLOSED, HALF_OPEN, OPEN, Breaker
from sidecar.resilience.policy import UpstreamPolicy
from sidecar.resilience.state import ResilienceState
from sidecar.telemetry import names
from sidecar.telemetry.decision_log import DecisionLog
from sidecar.telemetry.instruments import Instruments
from sidecar.telemetry.setup import Telemetry
from sidecar.upstream.base import UpstreamResponse

DECISION_HEADER = "x-sidecar-decision-id"
REVISION_HEADER = "x-sidecar-bundle-revision"
UPSTREAM_HEADER = "x-sidecar-upstream"
TOOLS_REMOVED_HEADER = "x-sidecar-tools-removed"
REDACTED_HEADER = "x-sidecar-redacted"


@dataclass
class Exchange:
    """What one call carries through the stages, for telemetry and the response."""

    decision_id: str
    revision: str
    started: float
    span: Span | None = None
    route: Route | None = None
    upstream: UpstreamSpec | None = None
    principal: Principal | None = None
    decision: Decision | None = None
    authz_seconds: float = 0.0
    tool_gate: ToolGate | None = None  # set when the request offered tools
    tools_removed: tuple[str, ...] = ()
    tool_servers: list[tuple[str, str]] | None = None  # remote tool servers offered upstream
    guards: Record | None = None  # set when the bundle has guards
    subject: Subject | None = None
    admission: Admission | None = None  # set when limits apply to the call
    limit_headers: list[tuple[str, str]] | None = None
    drop_usage_chunk: bool = False  # usage was asked for upstream on the sidecar's behalf
    limit_refused: str | None = None  # the rule that refused the call
    relay_started: bool = False  # the stream relay ran (and so closes its own books)
    reply_body: tuple[Adapter, bytes] | None = None  # a plain success, before output stages
    attempts: int = 0  # upstream attempts made, retries and fallbacks included
    deadline_s: float | None = None  # the call's total deadline, when one applies


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
        self.pod = pod
        self.bounds = bounds or ResponseBounds()
        self.decision_log = decision_log or DecisionLog("none")
        self._tracer = telemetry.tracer
        self._m = telemetry.instruments
        self._recording = telemetry.recording
        self.limit_stores = limit_stores or LimitStores()
        self._res = resilience or ResilienceState()
        self.resilience = self._res
        self._executor = Executor(self._res, _BreakerGauge(self._m))
        m = self._m
        self._limiter = Limiter(
            self.limit_stores,
            on_decision=lambda rule, result: m.limit_decisions.add(1, (rule, result)),
            on_store_error=lambda store: m.limit_store_errors.add(1, (store,)),
            on_remaining=lambda rule, key, unit, left: m.budget_remaining.set(
                left, (rule, key, unit)
            ),
        )

    # --- entry points --------------------------------------------------------------------

    async def llm(
        self,
        gen: Generation,
        adapter: Adapter,
        call: Call,
        headers: Mapping[str, str],
        ex: Exchange,
    ) -> Reply | StreamReply:
        parent = propagate.extract(headers) if "traceparent" in headers else None
        span = self._tracer.start_span(
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
        ex.span = span
        try:
            principal = await self.identify(gen, headers, ex)
            self._authorize(gen, call, principal, ex)
            self._govern_tools(gen, adapter, call, principal, ex)
            route, spec = self._route(gen, call, ex)
            await self._guard_input(gen, call, principal, ex, route)
            await self._limit(gen, call, principal, ex, route)
            return await self._forward(gen, adapter, call, headers, ex, route, spec)
        except SidecarError as err:
            reply = self.error(adapter, err, ex)
            # A reply refused after the provider made it (a guard, the tool gate) still
            # cost what the provider reported: account for it.
            self._finish(
                ex, call, Usage(), reply.status, error_type=err.kind.value, body=ex.reply_body
            )
            return reply
        except BaseException as exc:
            self._finish(ex, call, Usage(), 500, error_type=type(exc).__qualname__)
            raise

    def error(self, adapter: Adapter, err: SidecarError, ex: Exchange) -> Reply:
        headers = self.sidecar_headers(ex)
        headers["content-type"] = "application/json"
        if err.retry_after is not None:
            headers["retry-after"] = str(max(0, math.ceil(err.retry_after)))
            if err.kind is ErrorKind.RATE_LIMITED:
                headers["retry-after-ms"] = str(max(0, math.ceil(err.retry_after * 1000)))
        if err.retryable is not None:
            headers["x-should-retry"] = "true" if err.retryable else "false"
        return Reply(err.status, headers, adapter.error_body(err))

    def _drop_provider_limits(self, ex: Exchange, down: CIMultiDict[str]) -> None:
        """Our rate-limit headers replace the provider's of the same names (one value each)."""
        if ex.limit_headers:
            for name, _ in ex.limit_headers:
                down.popall(name, None)

    def sidecar_headers(self, ex: Exchange) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict()
        headers[DECISION_HEADER] = ex.decision_id
        headers[REVISION_HEADER] = ex.revision
        if ex.upstream is not None:
            headers[UPSTREAM_HEADER] = ex.upstream.name
        if ex.tools_removed:
            headers[TOOLS_REMOVED_HEADER] = ",".join(ex.tools_removed)
        if ex.guards is not None and ex.guards.hits:
            redacted = ex.guards.redactions()
            if redacted:
                headers[REDACTED_HEADER] = ",".join(f"{g}={n}" for g, n in redacted.items())
        if ex.limit_headers:
            headers.extend(ex.limit_headers)
        return headers

    def count(self, ex: Exchange, status: int) -> None:
        self._m.requests.add(
            1,
            (
                ex.route.name if ex.route else "",
                ex.upstream.name if ex.upstream else "",
                str(status),
            ),
        )

    # --- stages --------------------------------------------------------------------------

    async def identify(
        self, gen: Generation, headers: Mapping[str, str], ex: Exchange
    ) -> Principal:
        config = gen.snapshot.identity
        if config.jwt is not None:
            principal = await identify_with_jwt(config, self.pod, headers)
        else:
            principal = identify(config, self.pod, headers)
        ex.principal = principal
        if self._recording and ex.span is not None:
            ex.span.set_attribute(names.SIDECAR_TENANT_ID, principal.tenant)
            ex.span.set_attribute(names.SIDECAR_PRINCIPAL_ID, principal.id)
        return principal

    def _authorize(self, gen: Generation, call: Call, principal: Principal, ex: Exchange) -> None:
        model = call.model or ""
        started = time.perf_counter()
        span = None
        if self._recording and ex.span is not None:
            span = self._tracer.start_span(
                names.SPAN_AUTHORIZE, context=trace.set_span_in_context(ex.span)
            )
        decision = gen.snapshot.authorizer.decide(
            principal, call.action, "Model", model, CallContext(call, principal)
        )
        ex.decision = decision
        ex.authz_seconds = time.perf_counter() - started
        result = "allow" if decision.allowed else "deny"
        self._m.decisions.add(1, (call.action, result))
        if span is not None and ex.span is not None:
            for target in (span, ex.span):
                target.set_attribute(names.SIDECAR_DECISION, result)
                if decision.policies:
                    target.set_attribute(names.SIDECAR_POLICIES, decision.policies)
            span.end()
        if decision.allowed:
            return
        who = f"principal '{principal.id}' (tenant '{principal.tenant}'"
        who += (
            f", roles {', '.join(sorted(principal.roles))})" if principal.roles else ", no roles)"
        )
        if decision.policies:
            by = ", ".join(f"'{p}'" for p in decision.policies)
            message = f"denied by policy {by}: {call.action} on model '{model}' for {who}"
        else:
            message = (
                f"no policy permits {call.action} on model '{model}' for {who}; "
                "the sidecar denies by default"
            )
        raise SidecarError(
            ErrorKind.FORBIDDEN,
            f"{message} [bundle revision {gen.snapshot.revision}]",
            code="policy_denied",
        )

    def _govern_tools(
        self, gen: Generation, adapter: Adapter, call: Call, principal: Principal, ex: Exchange
    ) -> None:
        if not adapter.offers_tools(call.path, call.body):
            return  # most calls offer no tools: skip the extraction
        gate = ToolGate(gen.snapshot.authorizer, principal, CallContext(call, principal))
        ex.tool_gate = gate
        forbidden = gate.forbidden(call.tool_names)
        if forbidden:
            self._remove_tools(gen, adapter, call, principal, ex, forbidden)
        ex.tool_servers = adapter.tool_urls(call.path, call.body)

    def _remove_tools(
        self,
        gen: Generation,
        adapter: Adapter,
        call: Call,
        principal: Principal,
        ex: Exchange,
        forbidden: list[str],
    ) -> None:
        listed = ", ".join(f"'{n}'" for n in forbidden)
        if gen.snapshot.tool_request_mode == "deny":
            raise SidecarError(
                ErrorKind.FORBIDDEN,
                f"the request offers tools {listed} that principal '{principal.id}' may not "
                f"call [bundle revision {gen.snapshot.revision}]",
                code="tool_forbidden",
            )
        adapter.without_tools(call.path, call.body, set(forbidden))
        call.raw = orjson.dumps(call.body)  # the only case where the body is re-serialized
        ex.tools_removed = tuple(forbidden)

    # --- limits --------------------------------------------------------------------------

    async def _limit(
        self, gen: Generation, call: Call, principal: Principal, ex: Exchange, route: Route
    ) -> None:
        limits = gen.snapshot.limits
        if limits.empty:
            return
        parent = trace.set_span_in_context(ex.span) if ex.span is not None else None
        span = self._tracer.start_span(names.SPAN_LIMITS_CHECK, context=parent)
        try:
            adm = await self._limiter.admit(limits, call, principal, route.name, ex.decision_id)
        except LimitRefused as err:
            ex.limit_headers = rate_limit_headers(err.entries, call.provider)
            ex.limit_refused = err.rule
            if err.store_error and self._recording:
                span.set_attribute(names.SIDECAR_LIMIT_STORE_ERROR, err.store_error)
            _end_limit_span(span, self._recording, "rejected", err.rule, err.message)
            raise
        except SidecarError as err:
            _end_limit_span(span, self._recording, "error", None, err.message)
            raise
        if adm is None:
            _end_limit_span(span, self._recording, "none", None, None)
            return
        ex.admission = adm
        ex.limit_headers = rate_limit_headers(adm.entries(), call.provider)
        _end_limit_span(span, self._recording, "admitted", None, None, adm)
        if adm.spends and call.stream and call.path in _USAGE_ON_REQUEST:
            options = call.body.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage") is True):
                # Settling needs the real usage; ask for it, and hide it from a caller
                # who did not ask (see _relay).
                opts = dict(options) if isinstance(options, dict) else {}
                opts["include_usage"] = True
                call.body["stream_options"] = opts
                call.raw = orjson.dumps(call.body)
                ex.drop_usage_chunk = True

    # --- guards --------------------------------------------------------------------------

    async def _guard_input(
        self, gen: Generation, call: Call, principal: Principal, ex: Exchange, route: Route
    ) -> None:
        gs = gen.snapshot.guards
        if gs.empty:
            return
        ex.guards = Record(trace=self._stage_trace(ex))
        ex.subject = Subject(route.name, principal.tenant, call.model, principal.roles)
        if ex.tool_servers and gs.tool:
            check_server_urls(gs, ex.tool_servers, ex.subject, ex.guards)
        if not gs.input:
            return
        with ex.guards.stage("input"):
            changed = await check_input(gs, call.texts, ex.subject, ex.guards)
        if changed:
            call.raw = orjson.dumps(call.body)

    async def _guard_output(
        self, gen: Generation, adapter: Adapter, call: Call, ex: Exchange, body: bytes
    ) -> bytes:
        record, subject = ex.guards, ex.subject
        gs = gen.snapshot.guards
        if record is None or subject is None:
            return body
        if not (gs.output or gs.tool or record.vault is not None):
            return body
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        if not isinstance(obj, dict):
            return body
        texts, calls = adapter.reply_texts(call.path, obj)
        with record.stage("output"):
            changed = await check_output(gs, texts, calls, subject, record)
        if gs.output:
            changed = adapter.scrub(call.path, obj) or changed
        return orjson.dumps(obj) if changed else body

    def _output_editor(
        self, gen: Generation, adapter: Adapter, call: Call, ex: Exchange
    ) -> StreamEditor | None:
        if ex.guards is None or ex.subject is None:
            return None
        flt = OutputFilter(gen.snapshot.guards, ex.subject, ex.guards)
        if not flt.active:
            return None
        return adapter.stream_editor(call.path, flt)

    def _stage_trace(self, ex: Exchange) -> Callable[[str], AbstractContextManager[None]]:
        """Wraps a guard stage in its span (`guard.input`, `guard.output`, `guard.tool`)."""

        @contextlib.contextmanager
        def stage(name: str) -> Iterator[None]:
            span = self._guard_span(f"guard.{name}", ex)
            start = len(ex.guards.hits) if ex.guards is not None else 0
            try:
                yield
            except SidecarError as err:
                self._end_guard_span(span, ex, name, err, start)
                raise
            self._end_guard_span(span, ex, name, None, start)

        return stage

    def _guard_span(self, name: str, ex: Exchange) -> Span:
        parent = trace.set_span_in_context(ex.span) if ex.span is not None else None
        return self._tracer.start_span(name, context=parent)

    def _end_guard_span(
        self, span: Span, ex: Exchange, stage: str, err: SidecarError | None, start: int = 0
    ) -> None:
        if self._recording and ex.guards is not None:
            hits = [h for h in ex.guards.hits[start:] if h.stage == stage]
            span.set_attribute(names.SIDECAR_GUARD_FINDINGS, len(hits))
            if hits:
                span.set_attribute(names.SIDECAR_GUARD_TYPES, sorted({h.type for h in hits}))
                span.set_attribute(names.SIDECAR_GUARD_ID, sorted({h.guard for h in hits}))
            outcome = (
                "block"
                if err is not None
                else ("redact" if any(h.action == "redact" for h in hits) else "pass")
            )
            span.set_attribute(names.SIDECAR_GUARD_OUTCOME, outcome)
            if err is not None:
                span.set_status(Status(StatusCode.ERROR, err.message))
        span.end()

    def _blocked_tool_call(self, ex: Exchange, names: list[str]) -> SidecarError:
        who = ex.principal.id if ex.principal else "?"
        listed = ", ".join(f"'{n}'" for n in names)
        return SidecarError(
            ErrorKind.FORBIDDEN,
            f"the model proposed a call to tool {listed}, which principal '{who}' may not "
            f"call; the response was blocked [bundle revision {ex.revision}]",
            code="tool_call_blocked",
        )

    def _route(self, gen: Generation, call: Call, ex: Exchange) -> tuple[Route, UpstreamSpec]:
        route = gen.snapshot.route(call.path, call.model)
        if route is None:
            raise SidecarError(
                ErrorKind.NOT_FOUND,
                f"no route in bundle revision {gen.snapshot.revision} serves model "
                f"'{call.model}' on {call.path}",
                code="model_not_found",
                param="model",
            )
        spec = gen.snapshot.upstreams[route.upstream]
        ex.route, ex.upstream = route, spec
        if self._recording:
            assert ex.span is not None
            ex.span.set_attributes(
                {
                    names.GEN_AI_PROVIDER_NAME: spec.provider_name,
                    names.SIDECAR_ROUTE: route.name,
                    names.SIDECAR_UPSTREAM: spec.name,
                }
            )
            if spec.host:
                ex.span.set_attributes(
                    {names.SERVER_ADDRESS: spec.host, names.SERVER_PORT: spec.port}
                )
        if spec.credential_problem:
            raise SidecarError(
                ErrorKind.MISCONFIGURED,
                "configuration error in the sidecar, not in the request: it cannot call "
                f"this model because {spec.credential_problem}",
                code="upstream_credential_missing",
                retryable=False,
            )
        return route, spec

    async def _forward(
        self,
        gen: Generation,
        adapter: Adapter,
        call: Call,
        headers: Mapping[str, str],
        ex: Exchange,
        route: Route,
        spec: UpstreamSpec,
    ) -> Reply | StreamReply:
        """Send the call through the resilience executor and relay what answers."""
        assert ex.span is not None
        snapshot = gen.snapshot
        targets = targets_for(route, spec, snapshot.upstreams, snapshot.policies)
        deadline = self._deadline(targets[0].policy, route, headers, ex)
        attempt = UpstreamAttempt(
            self._tracer,
            self._recording,
            gen.transports,
            self.bounds.max_response_bytes,
            call,
            headers,
            route,
            ex.span,
            deadline,
        )
        try:
            outcome = await self._executor.run(route, targets, attempt, deadline)
        finally:
            ex.attempts = attempt.count
        if isinstance(outcome, Failure):
            ex.upstream = outcome.target
            raise outcome.error()
        return await self._respond(gen, adapter, call, ex, outcome)

    def _deadline(
        self, policy: UpstreamPolicy, route: Route, headers: Mapping[str, str], ex: Exchange
    ) -> float | None:
        """The loop time by which the whole call must end, if anything sets one."""
        total = total_timeout(policy, route, headers)
        if total is None:
            return None
        spent = time.perf_counter() - ex.started
        ex.deadline_s = total
        return asyncio.get_running_loop().time() + max(0.0, total - spent)

    async def _respond(
        self, gen: Generation, adapter: Adapter, call: Call, ex: Exchange, answer: Answer
    ) -> Reply | StreamReply:
        resp, attempt, spec = answer.resp, answer.attempt, answer.target
        if ex.upstream is not spec:
            ex.upstream = spec
            if self._recording and ex.span is not None:
                ex.span.set_attribute(names.SIDECAR_UPSTREAM, spec.name)
                ex.span.set_attribute(names.GEN_AI_PROVIDER_NAME, spec.provider_name)
        attempt.set_attribute(names.HTTP_RESPONSE_STATUS_CODE, resp.status)
        down = downstream_headers(resp.headers)
        # The SDKs read the body by what they asked for, not by its label: a streamed
        # call's success is a stream and a plain call's success is JSON, whatever the
        # Content-Type says, so the tool gate and the guards read it that way too.
        self._drop_provider_limits(ex, down)
        if streams(resp, call):
            down.extend(self.sidecar_headers(ex))
            editor = self._output_editor(gen, adapter, call, ex) if resp.status < 300 else None
            relay = self._relay(adapter, call, ex, resp, attempt, editor)

            def done() -> None:
                # The relay's own `finally` closes the books, but a generator that never
                # started has none to run: the caller left before the first chunk.
                if not ex.relay_started:
                    resp.close()
                    end_error(attempt, None, "cancelled by the caller")
                    self._finish(ex, call, Usage(), resp.status, error_type="cancelled")

            return StreamReply(resp.status, down, relay, done, partial(_cut_event, adapter))
        body = answer.body
        if body is None:
            try:
                body = await read_bounded(resp, self.bounds.max_response_bytes)
            except BaseException as exc:
                end_error(attempt, exc)
                raise upstream_failure(spec, exc) from exc
        end_attempt(attempt, resp.status)
        ctype = down.get("content-type", "")
        if resp.status >= 400 and not is_api_error(ctype, body):
            err = page_error(spec.name, resp.status, ctype, body)
            body = adapter.error_body(err)
            down["content-type"] = "application/json"
        is_json = resp.status < 300
        if is_json:
            ex.reply_body = (adapter, body)
        if ex.tool_gate is not None and is_json:
            violations = response_violations(adapter, call.path, body, ex.tool_gate)
            if violations:
                raise self._blocked_tool_call(ex, violations)
        if ex.guards is not None and is_json:
            body = await self._guard_output(gen, adapter, call, ex, body)
        down.extend(self.sidecar_headers(ex))
        self._finish(
            ex,
            call,
            Usage(),
            resp.status,
            error_type=None if resp.status < 400 else str(resp.status),
            body=(adapter, body) if is_json else None,
        )
        return Reply(resp.status, down, body)

    def _relay(
        self,
        adapter: Adapter,
        call: Call,
        ex: Exchange,
        resp: UpstreamResponse,
        attempt: Span,
        editor: StreamEditor | None = None,
    ) -> AsyncIterator[bytes]:
        """The stream relay, with this call's response stages and books."""
        guard_span: list[Span] = []
        admission = ex.admission

        def start() -> None:
            ex.relay_started = True
            if editor is not None:
                guard_span.append(self._guard_span(names.SPAN_GUARD_OUTPUT, ex))

        def first_chunk() -> None:
            up = ex.upstream
            self._m.time_to_first_chunk.record(
                time.perf_counter() - ex.started,
                (
                    call.operation,
                    up.provider_name if up else "",
                    call.model or "",
                    up.host if up else "",
                ),
            )

        def end(usage: Usage, error_type: str | None, guard_error: SidecarError | None) -> None:
            if guard_span:
                self._end_guard_span(guard_span[0], ex, "output", guard_error)
            self._finish(ex, call, usage, resp.status, error_type=error_type)

        stages = ResponseStages(
            gate=ex.tool_gate,
            editor=editor,
            drop_usage=ex.drop_usage_chunk,
            spend=admission if admission is not None and admission.spends else None,
        )
        return relay(
            adapter,
            call,
            ex.upstream,
            resp,
            attempt,
            self.bounds,
            stages,
            partial(self._blocked_tool_call, ex),
            start,
            first_chunk,
            end,
        )

    # --- account -------------------------------------------------------------------------

    def _finish(
        self,
        ex: Exchange,
        call: Call,
        usage: Usage,
        status: int,
        *,
        error_type: str | None,
        body: tuple[Adapter, bytes] | None = None,
    ) -> None:
        """Close the books on a call once its reply is on the wire.

        Metrics, the decision log, the span's closing attributes and reading
        usage out of a plain reply (`body`) need nothing the caller waits for,
        so they run in the loop's next turn: after the handler has written the
        response, not before.
        """
        elapsed = time.perf_counter() - ex.started
        asyncio.get_running_loop().call_soon(
            self._account, ex, call, usage, status, error_type, elapsed, body
        )

    def _account(
        self,
        ex: Exchange,
        call: Call,
        usage: Usage,
        status: int,
        error_type: str | None,
        elapsed: float,
        body: tuple[Adapter, bytes] | None,
    ) -> None:
        if body is not None:
            usage = body[0].usage_from_body(call.path, body[1])
        if ex.admission is not None:
            if body is not None and usage.output_tokens is None and ex.admission.spends:
                # No usage reported: charge the reply's text, as for a stream.
                ex.admission.produced_chars = streamed_text_chars(body[1])
            self._limiter.settle(ex.admission, usage, status)
        up = ex.upstream
        attrs = (
            call.operation,
            up.provider_name if up else "",
            (call.model or "") if up else "",  # unrouted names stay out of label sets
            usage.response_model or "",
            up.host if up else "",
            error_type or "",
        )
        self._m.operation_duration.record(elapsed, attrs)
        if usage.input_tokens is not None:
            self._m.token_usage.record(usage.input_tokens, (*attrs, "input"))
        if usage.output_tokens is not None:
            self._m.token_usage.record(usage.output_tokens, (*attrs, "output"))
        self.count(ex, status)
        if ex.guards is not None:
            for hit in ex.guards.hits:
                self._m.guard_findings.add(1, (hit.guard, hit.type, hit.action))
        if self.decision_log.enabled:
            self.decision_log.record(self._log_entry(ex, call, usage, status, error_type, elapsed))
        span = ex.span
        if span is None:
            return
        if self._recording:
            _describe(span, usage, status, error_type)
        span.end()

    def _log_entry(
        self,
        ex: Exchange,
        call: Call,
        usage: Usage,
        status: int,
        error_type: str | None,
        elapsed: float,
    ) -> dict[str, Any]:
        p, d = ex.principal, ex.decision
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
            "resource": {"type": "Model", "id": call.model},
            "result": result,
            "policies": list(d.policies) if d else [],
            "reasons": list(d.errors) if d else [],
            "authz_us": round(ex.authz_seconds * 1e6, 1),
            "status": status,
            "error_type": error_type,
            "upstream": ex.upstream.name if ex.upstream else None,
            "stream": call.stream,
            "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
            "duration_ms": round(elapsed * 1000, 3),
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
        if self.decision_log.include_content:
            entry["content"] = log_content(call.texts, ex.guards)
        return entry


_second: list[Any] = [0, ""]  # the last whole second formatted, reused within it


def _iso_now() -> str:
    now = time.time()
    whole = int(now)
    if _second[0] != whole:
        _second[0], _second[1] = whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{_second[1]}.{int((now - whole) * 1000):03d}Z"


_USAGE_ON_REQUEST = ("/v1/chat/completions", "/v1/completions")
_BREAKER_CODES = {CLOSED: 0.0, HALF_OPEN: 1.0, OPEN: 2.0}


def _cut_event(adapter: Adapter) -> bytes:
    """The event that ends a stream the sidecar cuts at the end of its shutdown grace."""
    return adapter.stream_error(
        SidecarError(
            ErrorKind.UNAVAILABLE,
            "the sidecar is shutting down and its grace period ended before this stream did; "
            "retry the call",
            code="sidecar_shutting_down",
        )
    )


def _end_limit_span(
    span: Span,
    recording: bool,
    result: str,
    rule: str | None,
    message: str | None,
    adm: Admission | None = None,
) -> None:
    if recording:
        span.set_attribute(names.SIDECAR_LIMIT_RESULT, result)
        if adm is not None:
            span.set_attribute(names.SIDECAR_LIMIT_RULES, list(adm.rules))
            if adm.store_error:
                span.set_attribute(names.SIDECAR_LIMIT_STORE_ERROR, adm.store_error)
        if rule is not None:
            span.set_attribute(names.SIDECAR_LIMIT_RULES, [rule])
        if result in ("rejected", "error"):
            span.set_status(Status(StatusCode.ERROR, message))
    span.end()


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
