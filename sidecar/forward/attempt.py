"""One try at one upstream: its headers, the transport call and the attempt's span.

The executor decides whether and where to try; this only tries, once, and
hands back the response head (with a plain success's body already read) or
raises the transport's error, its span already closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from sidecar.bounds import read_bounded
from sidecar.bundle.snapshot import Route, UpstreamSpec
from sidecar.call import Call
from sidecar.forward.executor import Target, failing
from sidecar.forward.headers import upstream_headers
from sidecar.resilience.breaker import Breaker
from sidecar.telemetry import names
from sidecar.upstream.base import Transport, UpstreamResponse


@dataclass(slots=True)
class Answer:
    """An upstream's response head, to be relayed (success, or the error passed through)."""

    target: UpstreamSpec
    attempt: Span
    resp: UpstreamResponse
    body: bytes | None = None  # a plain reply's body, already read

    @property
    def status(self) -> int:
        return self.resp.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self.resp.headers

    def drop(self) -> None:
        self.resp.close()
        end_attempt(self.attempt, self.resp.status)

    def discard(self) -> None:
        self.resp.close()
        end_error(self.attempt, None, "a faster hedged attempt answered first")


class UpstreamAttempt:
    """The attempts of one call: each gets the call's headers, its own span and a send."""

    def __init__(
        self,
        tracer: Tracer,
        recording: bool,
        transports: Mapping[str, Transport],
        max_response_bytes: int,
        call: Call,
        headers: Mapping[str, str],
        route: Route,
        parent: Span,
        deadline: float | None,
    ) -> None:
        self._tracer = tracer
        self._recording = recording
        self._transports = transports
        self._max_bytes = max_response_bytes
        self._call = call
        self._headers = headers
        self._route = route
        self._parent = parent
        self._deadline = deadline
        self.count = 0  # attempts made, retries and fallbacks included

    async def __call__(self, target: Target, breaker: Breaker | None) -> Answer:
        call, spec = self._call, target.spec
        model = target.model
        raw = call.wire() if model is None or model == call.model else _with_model(call, model)
        t = target.policy.timeouts
        span = self._span(spec)
        if self._recording and breaker is not None:
            span.set_attribute(names.SIDECAR_BREAKER_STATE, breaker.state)
        self.count += 1
        trace_headers: dict[str, str] = {}
        propagate.inject(trace_headers, context=trace.set_span_in_context(span))
        out_headers = upstream_headers(self._headers, spec, trace_headers)
        resp: UpstreamResponse | None = None
        try:
            resp = await self._transports[spec.name].send(
                "POST",
                call.path,
                out_headers,
                raw,
                query=call.query,
                connect_timeout=t.connect,
                first_byte_timeout=t.first_byte,
                idle_timeout=t.idle,
                deadline=self._deadline,
            )
            body: bytes | None = None
            if not failing(resp.status, target.policy.retry, self._route) and not streams(
                resp, call
            ):
                body = await read_bounded(resp, self._max_bytes)
        except asyncio.CancelledError:
            end_error(span, None, "cancelled")
            if resp is not None:
                resp.close()
            raise
        except (OSError, TimeoutError) as exc:
            end_error(span, exc)
            if resp is not None:
                resp.close()
            raise
        return Answer(spec, span, resp, body)

    def _span(self, target: UpstreamSpec) -> Span:
        attrs: dict[str, Any] | None = None
        if self._recording:
            attrs = {names.HTTP_REQUEST_METHOD: "POST", names.SIDECAR_UPSTREAM: target.name}
            if target.host:
                attrs[names.URL_FULL] = target.url_for(self._call.path)
                attrs[names.SERVER_ADDRESS] = target.host
                attrs[names.SERVER_PORT] = target.port
            if self.count:
                attrs[names.HTTP_REQUEST_RESEND_COUNT] = self.count
        return self._tracer.start_span(
            f"POST {target.name}",
            context=trace.set_span_in_context(self._parent),
            kind=SpanKind.CLIENT,
            attributes=attrs,
        )


def streams(resp: UpstreamResponse, call: Call) -> bool:
    """The SDKs read the body by what they asked for, not by its label: a streamed call's
    success is a stream and a plain call's success is JSON, whatever the Content-Type
    says, so the tool gate and the guards read it that way too."""
    ctype = resp.headers.get("content-type", "")
    return ctype.startswith("text/event-stream") or (call.stream and resp.status < 300)


def end_attempt(span: Span, status: int) -> None:
    if status >= 400:
        span.set_attribute(names.ERROR_TYPE, str(status))
        span.set_status(Status(StatusCode.ERROR))
    span.end()


def end_error(span: Span, exc: BaseException | None, message: str | None = None) -> None:
    span.set_attribute(names.ERROR_TYPE, type(exc).__qualname__ if exc else "cancelled")
    span.set_status(Status(StatusCode.ERROR, message or (str(exc) if exc else None)))
    span.end()


def _with_model(call: Call, model: str) -> bytes:
    """The body for an upstream that knows the model by another name (a deployment)."""
    return orjson.dumps({**call.body, "model": model})
