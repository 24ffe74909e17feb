"""SIDECAR_OTEL_EXPORTER=otlp sends spans and metrics where OTEL_EXPORTER_OTLP_* says."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai
import pytest
import yaml
from aiohttp import web
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from sidecar.server.app import Sidecar
from sidecar.settings import Settings
from sidecar.telemetry.setup import setup_telemetry


async def test_otlp_http_export_reaches_a_collector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    received: dict[str, list[bytes]] = {"/v1/traces": [], "/v1/metrics": []}

    async def collect(request: web.Request) -> web.Response:
        received[request.path].append(await request.read())
        return web.Response(status=200, content_type="application/x-protobuf", body=b"")

    app = web.Application()
    app.router.add_post("/v1/traces", collect)
    app.router.add_post("/v1/metrics", collect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://{host}:{port}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "agent-sidecar-under-test")

    (tmp_path / "bundle.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "sidecar/v1",
                "revision": "otlp-1",
                "upstreams": {"mock": {"builtin": "mock"}},
                "routes": [{"upstream": "mock"}],
                "roles": {"agent": [{"actions": ["*"]}]},
            }
        )
    )
    telemetry = setup_telemetry("otlp")
    settings = Settings.resolve(bundle=str(tmp_path), http="127.0.0.1:0", admin="127.0.0.1:0")
    sidecar = Sidecar(settings, telemetry)
    await sidecar.start(watch=False)
    try:
        assert sidecar.http_address is not None
        client = openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{sidecar.http_address[1]}/v1", api_key="x"
        )
        await client.chat.completions.create(
            model="mock-echo", messages=[{"role": "user", "content": "export me"}]
        )
        # Exporters run in their own threads and post to the collector served by this loop.
        await asyncio.to_thread(telemetry.force_flush)
    finally:
        await sidecar.stop()
        await asyncio.to_thread(telemetry.shutdown)
        await runner.cleanup()

    spans = []
    for blob in received["/v1/traces"]:
        req = ExportTraceServiceRequest.FromString(blob)
        for rs in req.resource_spans:
            service = {a.key: a.value.string_value for a in rs.resource.attributes}
            assert service["service.name"] == "agent-sidecar-under-test"
            spans += [s.name for ss in rs.scope_spans for s in ss.spans]
    assert "chat mock-echo" in spans and "POST mock" in spans
    metrics = set()
    for blob in received["/v1/metrics"]:
        mreq = ExportMetricsServiceRequest.FromString(blob)
        metrics |= {
            m.name for rm in mreq.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        }
    assert {"gen_ai.client.operation.duration", "gen_ai.client.token.usage"} <= metrics
