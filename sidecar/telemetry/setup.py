"""Build tracing and metrics once per sidecar, from settings and OTEL_* variables.

`SIDECAR_OTEL_EXPORTER` picks where spans and metrics go (none, console,
otlp); the OTLP exporters read the standard `OTEL_EXPORTER_OTLP_*` variables
themselves. Prometheus text for `/metrics` is always available, from a
private registry so several sidecars can live in one test process.

The OpenTelemetry SDK (providers, resources, exporters, protobuf) is imported
only when something records: with no exporter (the default) the sidecar needs
the API alone, and the SDK with its semantic-convention tables costs some
10 MB of a process that otherwise stays under 70.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from opentelemetry import trace
from prometheus_client import CollectorRegistry, generate_latest

from sidecar import __version__
from sidecar.telemetry.instruments import Instruments
from sidecar.telemetry.metrics import MetricFactory
from sidecar.telemetry.tracing import PropagatingTracer

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

Exporter = Literal["none", "console", "otlp"]
EXPORTERS: tuple[Exporter, ...] = ("none", "console", "otlp")


@dataclass
class Telemetry:
    tracer: trace.Tracer
    instruments: Instruments
    registry: CollectorRegistry
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    recording: bool = field(default=False)

    def prometheus_text(self) -> bytes:
        data: bytes = generate_latest(self.registry)
        return data

    def force_flush(self) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.force_flush()
        if self.meter_provider is not None:
            self.meter_provider.force_flush()

    def shutdown(self) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()


def setup_telemetry(
    exporter: Exporter = "none", span_processors: Sequence[SpanProcessor] = ()
) -> Telemetry:
    """Build providers; extra span processors let tests read spans in memory."""
    processors = list(span_processors)
    span_exporter = _span_exporter(exporter)
    if span_exporter is not None:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        processors.append(BatchSpanProcessor(span_exporter))
    tracer_provider: TracerProvider | None = None
    tracer: trace.Tracer
    if processors:
        from opentelemetry.sdk.trace import TracerProvider

        tracer_provider = TracerProvider(resource=_resource())
        for processor in processors:
            tracer_provider.add_span_processor(processor)
        tracer = tracer_provider.get_tracer("sidecar", __version__)
    else:
        tracer = PropagatingTracer()

    meter_provider: MeterProvider | None = None
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        meter_provider = MeterProvider(
            resource=_resource(),
            metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())],
        )
    registry = CollectorRegistry(auto_describe=True)
    meter = meter_provider.get_meter("sidecar", __version__) if meter_provider else None
    instruments = Instruments(MetricFactory(registry, meter))
    return Telemetry(
        tracer, instruments, registry, tracer_provider, meter_provider, recording=bool(processors)
    )


def _resource() -> Resource:
    from opentelemetry.sdk.resources import Resource

    return Resource.create(
        {
            "service.name": os.environ.get("OTEL_SERVICE_NAME", "sidecar"),
            "service.version": __version__,
        }
    )


def _span_exporter(exporter: Exporter) -> SpanExporter | None:
    if exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    return None
