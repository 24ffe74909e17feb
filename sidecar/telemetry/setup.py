"""Build the tracer and meter once per process, from settings and OTEL_* variables.

`SIDECAR_OTEL_EXPORTER` picks where spans and metrics go (none, console,
otlp); the OTLP exporters read the standard `OTEL_EXPORTER_OTLP_*` variables
themselves. Prometheus text for `/metrics` is always available, from a
private registry so several sidecars can live in one test process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from opentelemetry import trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from prometheus_client import CollectorRegistry, generate_latest

from sidecar import __version__
from sidecar.telemetry import names
from sidecar.telemetry.instruments import Instruments

Exporter = Literal["none", "console", "otlp"]
EXPORTERS: tuple[Exporter, ...] = ("none", "console", "otlp")


@dataclass
class Telemetry:
    tracer: trace.Tracer
    instruments: Instruments
    registry: CollectorRegistry
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def prometheus_text(self) -> bytes:
        data: bytes = generate_latest(self.registry)
        return data

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def setup_telemetry(
    exporter: Exporter = "none", span_processors: Sequence[SpanProcessor] = ()
) -> Telemetry:
    """Build providers; extra span processors let tests read spans in memory."""
    resource = Resource.create(
        {
            "service.name": os.environ.get("OTEL_SERVICE_NAME", "sidecar"),
            "service.version": __version__,
        }
    )
    tracer_provider = TracerProvider(resource=resource)
    span_exporter = _span_exporter(exporter)
    if span_exporter is not None:
        tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    for processor in span_processors:
        tracer_provider.add_span_processor(processor)

    registry = CollectorRegistry(auto_describe=True)
    readers: list[MetricReader] = [PrometheusMetricReader(registry=registry)]
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    views = [
        View(
            instrument_name=name,
            aggregation=ExplicitBucketHistogramAggregation(boundaries=buckets),
        )
        for name, buckets in (
            (names.METRIC_OPERATION_DURATION, names.DURATION_BUCKETS),
            (names.METRIC_TIME_TO_FIRST_CHUNK, names.DURATION_BUCKETS),
            (names.METRIC_TOKEN_USAGE, tuple(float(b) for b in names.TOKEN_BUCKETS)),
        )
    ]
    meter_provider = MeterProvider(resource=resource, metric_readers=readers, views=views)
    tracer = tracer_provider.get_tracer("sidecar", __version__)
    meter = meter_provider.get_meter("sidecar", __version__)
    return Telemetry(tracer, Instruments(meter), registry, tracer_provider, meter_provider)


def _span_exporter(exporter: Exporter) -> SpanExporter | None:
    if exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    return None
