"""A tracer for when no span exporter is configured: propagate, record nothing.

Building SDK spans that no processor will ever read costs tens of
microseconds a call. Without an exporter the sidecar still continues the
agent's trace context upstream — passing the agent's span on as the parent,
so the provider's spans attach to the agent's — and mints a fresh,
unsampled context when the agent sent none.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
)
from opentelemetry.util._decorator import _agnosticcontextmanager
from opentelemetry.util.types import Attributes


class PropagatingTracer(trace.Tracer):
    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        parent = trace.get_current_span(context).get_span_context()
        if parent.is_valid:
            return NonRecordingSpan(parent)
        return NonRecordingSpan(
            SpanContext(
                trace_id=random.getrandbits(128) or 1,
                span_id=random.getrandbits(64) or 1,
                is_remote=False,
                trace_flags=TraceFlags(TraceFlags.DEFAULT),
            )
        )

    @_agnosticcontextmanager
    def start_as_current_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[Span]:
        span = self.start_span(name, context, kind, attributes, links)
        with trace.use_span(span, end_on_exit=end_on_exit) as current:
            yield current
