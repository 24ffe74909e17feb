"""The forward stage: the LLM chain's terminal handler.

It sends the call through the resilience executor, then hands what answered
to the response side: a plain reply passes the chain's reply hooks once and
goes out whole; a stream goes through the relay. Either way the chain's
completion hooks run once the call has ended.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from functools import partial

from multidict import CIMultiDict
from opentelemetry.trace import Span

from sidecar.adapters.base import Adapter
from sidecar.bounds import ResponseBounds, read_bounded
from sidecar.call import Call, Usage
from sidecar.chain.exchange import Exchange, Outcome
from sidecar.chain.runner import Chain, Spans
from sidecar.chain.stage import PlainReply, Stage
from sidecar.error_pages import is_api_error, page_error
from sidecar.errors import ErrorKind, SidecarError
from sidecar.forward.attempt import Answer, UpstreamAttempt, end_attempt, end_error, streams
from sidecar.forward.executor import Executor, Failure, targets_for, total_timeout
from sidecar.forward.failures import upstream_failure
from sidecar.forward.headers import downstream_headers
from sidecar.forward.relay import relay
from sidecar.replies import Reply, StreamReply
from sidecar.resilience.policy import UpstreamPolicy
from sidecar.telemetry import names
from sidecar.telemetry.instruments import Instruments
from sidecar.upstream.base import UpstreamResponse


class Forward(Stage):
    name = "forward"

    def __init__(
        self, executor: Executor, bounds: ResponseBounds, instruments: Instruments, spans: Spans
    ) -> None:
        self.executor = executor
        self.bounds = bounds
        self._m = instruments
        self.spans = spans

    async def handle(self, ex: Exchange, chain: Chain) -> Reply | StreamReply:
        """Send the call through the resilience executor and answer with what came back."""
        assert ex.gen is not None and ex.call is not None and ex.span is not None
        assert ex.route is not None and ex.upstream is not None
        snapshot, route, headers = ex.gen.snapshot, ex.route, ex.call.headers
        targets = targets_for(route, ex.upstream, snapshot.upstreams, snapshot.policies)
        deadline = self._deadline(targets[0].policy, headers, ex)
        attempt = UpstreamAttempt(
            self.spans.tracer,
            self.spans.recording,
            ex.gen.transports,
            self.bounds.max_response_bytes,
            ex.call,
            headers,
            route,
            ex.span,
            deadline,
        )
        try:
            outcome = await self.executor.run(route, targets, attempt, deadline)
        finally:
            ex.attempts = attempt.count
        if isinstance(outcome, Failure):
            ex.upstream = outcome.target
            raise outcome.error()
        return await self._respond(ex, chain, outcome)

    def _deadline(
        self, policy: UpstreamPolicy, headers: Mapping[str, str], ex: Exchange
    ) -> float | None:
        """The loop time by which the whole call must end, if anything sets one."""
        assert ex.route is not None
        total = total_timeout(policy, ex.route, headers)
        if total is None:
            return None
        spent = time.perf_counter() - ex.started
        ex.deadline_s = total
        return asyncio.get_running_loop().time() + max(0.0, total - spent)

    async def _respond(self, ex: Exchange, chain: Chain, answer: Answer) -> Reply | StreamReply:
        assert ex.call is not None
        adapter: Adapter = ex.codec
        call = ex.call
        resp, attempt, spec = answer.resp, answer.attempt, answer.target
        if ex.upstream is not spec:
            ex.upstream = spec
            if self.spans.recording and ex.span is not None:
                ex.span.set_attribute(names.SIDECAR_UPSTREAM, spec.name)
                ex.span.set_attribute(names.GEN_AI_PROVIDER_NAME, spec.provider_name)
        attempt.set_attribute(names.HTTP_RESPONSE_STATUS_CODE, resp.status)
        down = downstream_headers(resp.headers)
        # Our rate-limit headers replace the provider's of the same names (one value each).
        if ex.limit_headers:
            for name, _ in ex.limit_headers:
                down.popall(name, None)
        # The SDKs read the body by what they asked for, not by its label: a streamed
        # call's success is a stream and a plain call's success is JSON, whatever the
        # Content-Type says, so the tool gate and the guards read it that way too.
        if streams(resp, call):
            return self._stream(ex, chain, resp, attempt, down)
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
        view = None
        if resp.status < 300:
            view = ex.reply_body = adapter.reply_view(call.path, body)
            reply = PlainReply(body, view)
            await chain.reply(ex, reply)
            body = reply.body
            view = reply.view(adapter, call.path)  # the same view, unless a hook replaced it
        down.extend(ex.sidecar_headers())
        chain.complete(
            ex,
            Outcome(
                resp.status,
                error_type=None if resp.status < 400 else str(resp.status),
                body=view,
            ),
        )
        return Reply(resp.status, down, body)

    def _stream(
        self,
        ex: Exchange,
        chain: Chain,
        resp: UpstreamResponse,
        attempt: Span,
        down: CIMultiDict[str],
    ) -> StreamReply:
        assert ex.call is not None
        adapter: Adapter = ex.codec
        call = ex.call
        down.extend(ex.sidecar_headers())
        chunks = self._relay(ex, chain, call, resp, attempt)

        def done() -> None:
            # The relay's own `finally` closes the books, but a generator that never
            # started has none to run: the caller left before the first chunk.
            if not ex.relay_started:
                resp.close()
                end_error(attempt, None, "cancelled by the caller")
                chain.complete(ex, Outcome(resp.status, error_type="cancelled"))

        return StreamReply(resp.status, down, chunks, done, partial(_cut_event, adapter))

    def _relay(
        self, ex: Exchange, chain: Chain, call: Call, resp: UpstreamResponse, attempt: Span
    ) -> AsyncIterator[bytes]:
        """The stream relay, with this call's stream hooks and books."""

        def start() -> None:
            ex.relay_started = True

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

        def end(usage: Usage, error_type: str | None) -> None:
            chain.complete(ex, Outcome(resp.status, usage=usage, error_type=error_type))

        return relay(
            ex.codec,
            call,
            ex.upstream,
            resp,
            attempt,
            self.bounds,
            partial(chain.stream, ex),
            start,
            first_chunk,
            end,
        )


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
