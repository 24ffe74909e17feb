"""The admin listener: liveness, readiness, bundle status and Prometheus metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from sidecar.bundle.store import BundleStore
from sidecar.telemetry.setup import Telemetry

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def admin_app(
    store: BundleStore,
    telemetry: Telemetry,
    serving: Callable[[], bool],
    details: Callable[[], dict[str, Any]] | None = None,
    *,
    probes_only: bool = False,
) -> web.Application:
    """`serving` says whether the proxy listener accepts calls: ready needs that too.

    `probes_only` serves /healthz and /readyz alone: what may face the pod
    network for kubelet, while bundle status and metrics stay on loopback.
    """

    async def healthz(request: web.Request) -> web.Response:
        return _json(200, {"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        status = store.status()
        reason = None
        if not status["ready"]:
            reason = "no valid policy bundle loaded yet"
        elif not serving():
            reason = "the proxy listener is not accepting calls (starting or shutting down)"
        body: dict[str, Any] = {
            "ready": reason is None,
            "revision": status["revision"],
            "reason": reason,
        }
        if details is not None:
            body.update(details())
        return _json(503 if reason else 200, body)

    async def bundle(request: web.Request) -> web.Response:
        return _json(200, store.status())

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=telemetry.prometheus_text(), headers={"content-type": PROMETHEUS_CONTENT_TYPE}
        )

    app = web.Application()
    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz)])
    if not probes_only:
        app.add_routes([web.get("/bundle", bundle), web.get("/metrics", metrics)])
    return app


def _json(status: int, body: object) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps(body, option=orjson.OPT_INDENT_2),
        headers={"content-type": "application/json"},
    )
