"""Metric instruments that cost about a microsecond on the request path.

Prometheus text at /metrics is served by `prometheus_client`, with one
cached child per label set, because the OpenTelemetry SDK spends over ten
microseconds per measurement cleaning and hashing attributes — a third of
the proxy's whole budget. When OTLP export is on, each measurement is also
recorded on an OpenTelemetry instrument of the same name, and that cost is
paid only by those who asked for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.metrics import Meter
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

# Past this many label sets an instrument folds new ones into one overflow set,
# so an agent inventing model names cannot grow the sidecar's memory.
MAX_LABEL_SETS = 2000
OVERFLOW = "_overflow"


def prometheus_name(name: str) -> str:
    return name.replace(".", "_")


class _Instrument:
    __slots__ = ("_attr_names", "_children", "_family", "_otel")

    def __init__(
        self, family: MetricWrapperBase, attr_names: Sequence[str], otel: Any | None
    ) -> None:
        self._family = family
        self._attr_names = tuple(attr_names)
        self._children: dict[tuple[str, ...], Any] = {}
        self._otel = otel

    def _child(self, values: tuple[str, ...]) -> Any:
        if not self._attr_names:
            return self._family
        child = self._children.get(values)
        if child is None:
            if len(self._children) >= MAX_LABEL_SETS:
                values = (OVERFLOW,) * len(values)
                child = self._children.get(values)
                if child is not None:
                    return child
            child = self._family.labels(*values)
            self._children[values] = child
        return child

    def _otel_attributes(self, values: tuple[str, ...]) -> dict[str, str]:
        return {k: v for k, v in zip(self._attr_names, values, strict=True) if v}


class HistogramInstrument(_Instrument):
    __slots__ = ()

    def record(self, value: float, values: tuple[str, ...]) -> None:
        self._child(values).observe(value)
        if self._otel is not None:
            self._otel.record(value, self._otel_attributes(values))


class CounterInstrument(_Instrument):
    __slots__ = ()

    def add(self, amount: float, values: tuple[str, ...]) -> None:
        self._child(values).inc(amount)
        if self._otel is not None:
            self._otel.add(amount, self._otel_attributes(values))


class GaugeInstrument(_Instrument):
    __slots__ = ()

    def set(self, value: float, values: tuple[str, ...]) -> None:
        self._child(values).set(value)
        if self._otel is not None:
            self._otel.set(value, self._otel_attributes(values))


class MetricFactory:
    """Creates each instrument in the Prometheus registry and, optionally, on an OTel meter."""

    def __init__(self, registry: CollectorRegistry, meter: Meter | None) -> None:
        self.registry = registry
        self.meter = meter

    def histogram(
        self,
        name: str,
        unit: str,
        description: str,
        attrs: Sequence[str],
        buckets: Sequence[float],
    ) -> HistogramInstrument:
        suffix = "_seconds" if unit == "s" else ""
        family = Histogram(
            prometheus_name(name) + suffix,
            description,
            [prometheus_name(a) for a in attrs],
            registry=self.registry,
            buckets=[*buckets, float("inf")],
        )
        otel = None
        if self.meter is not None:
            otel = self.meter.create_histogram(
                name,
                unit=unit,
                description=description,
                explicit_bucket_boundaries_advisory=list(buckets),
            )
        return HistogramInstrument(family, attrs, otel)

    def counter(
        self, name: str, unit: str, description: str, attrs: Sequence[str]
    ) -> CounterInstrument:
        family = Counter(
            prometheus_name(name),
            description,
            [prometheus_name(a) for a in attrs],
            registry=self.registry,
        )
        otel = None
        if self.meter is not None:
            otel = self.meter.create_counter(name, unit=unit, description=description)
        return CounterInstrument(family, attrs, otel)

    def gauge(
        self, name: str, unit: str, description: str, attrs: Sequence[str]
    ) -> GaugeInstrument:
        family = Gauge(
            prometheus_name(name),
            description,
            [prometheus_name(a) for a in attrs],
            registry=self.registry,
        )
        otel = None
        if self.meter is not None:
            otel = self.meter.create_gauge(name, unit=unit, description=description)
        return GaugeInstrument(family, attrs, otel)
