"""The metric instruments, created once per process and shared by all stages."""

from __future__ import annotations

from opentelemetry.metrics import Meter

from sidecar.telemetry import names


class Instruments:
    def __init__(self, meter: Meter) -> None:
        self.operation_duration = meter.create_histogram(
            names.METRIC_OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration, as the agent sees it through the sidecar.",
        )
        self.token_usage = meter.create_histogram(
            names.METRIC_TOKEN_USAGE,
            unit="{token}",
            description="Input and output tokens used, as reported by the provider.",
        )
        self.time_to_first_chunk = meter.create_histogram(
            names.METRIC_TIME_TO_FIRST_CHUNK,
            unit="s",
            description="Time from request to the first streamed chunk of the response.",
        )
        self.requests = meter.create_counter(
            names.METRIC_REQUESTS,
            unit="{request}",
            description="Proxied requests by route, upstream and HTTP status.",
        )
        self.bundle_reloads = meter.create_counter(
            names.METRIC_BUNDLE_RELOADS,
            unit="{reload}",
            description="Bundle load attempts by result: success, unchanged or error.",
        )
