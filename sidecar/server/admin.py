"""The admin listener: liveness, readiness, bundle status and Prometheus metrics.

It runs on the same HTTP/1.1 server as the proxy listener (`h1.py`): four GET
routes do not need a web framework, and aiohttp's server, imported only for
them, was some 7 MB of every sidecar's memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from multidict import CIMultiDict

from sidecar.bundle.store import BundleStore
from sidecar.replies import Reply, StreamReply
from sidecar.server.h1 import Request, Server
from sidecar.telemetry.setup import Telemetry

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ALLOWED = "GET, HEAD"
# Admin requests carry no body; anything larger than this is refused unread.
MAX_ADMIN_BODY_BYTES = 64 * 1024

Route = Callable[[], Reply]


class AdminHandlers:
    """`serving` says whether the proxy listener accepts calls: ready needs that too.

    `probes_only` serves /healthz and /readyz alone: what may face the pod
    network for kubelet, while bundle status and metrics stay on loopback.
    """

    def __init__(
        self,
        store: BundleStore,
        telemetry: Telemetry,
        serving: Callable[[], bool],
        details: Callable[[], dict[str, Any]] | None = None,
        *,
        probes_only: bool = False,
    ) -> None:
        self.store = store
        self.telemetry = telemetry
        self.serving = serving
        self.details = details
        self.routes: dict[str, Route] = {"/healthz": self.healthz, "/readyz": self.readyz}
        if not probes_only:
            self.routes.update({"/bundle": self.bundle, "/metrics": self.metrics})

    async def __call__(self, request: Request) -> Reply | StreamReply:
        route = self.routes.get(request.path)
        if route is None:
            return _text(404, "404: Not Found")
        if request.method not in ("GET", "HEAD"):
            reply = _text(405, "405: Method Not Allowed")
            reply.headers["allow"] = ALLOWED
            return reply
        return route()

    def healthz(self) -> Reply:
        return _json(200, {"status": "ok"})

    def readyz(self) -> Reply:
        status = self.store.status()
        reason = None
        if not status["ready"]:
            reason = "no valid policy bundle loaded yet"
        elif not self.serving():
            reason = "the proxy listener is not accepting calls (starting or shutting down)"
        body: dict[str, Any] = {
            "ready": reason is None,
            "revision": status["revision"],
            "reason": reason,
        }
        if self.details is not None:
            body.update(self.details())
        return _json(503 if reason else 200, body)

    def bundle(self) -> Reply:
        return _json(200, self.store.status())

    def metrics(self) -> Reply:
        headers: CIMultiDict[str] = CIMultiDict({"content-type": PROMETHEUS_CONTENT_TYPE})
        return Reply(200, headers, self.telemetry.prometheus_text())


def admin_server(
    store: BundleStore,
    telemetry: Telemetry,
    serving: Callable[[], bool],
    details: Callable[[], dict[str, Any]] | None = None,
    *,
    probes_only: bool = False,
) -> Server:
    """The admin (or probes-only) listener, not yet started; needs a running loop."""
    handlers = AdminHandlers(store, telemetry, serving, details, probes_only=probes_only)
    return Server(handlers, _error_reply, max_body_bytes=MAX_ADMIN_BODY_BYTES)


def _error_reply(status: int, message: str, request: Request | None) -> Reply:
    """The server's own refusals (malformed HTTP, a head too large, a failed handler)."""
    return _json(status, {"error": message})


def _json(status: int, body: object) -> Reply:
    headers: CIMultiDict[str] = CIMultiDict({"content-type": "application/json"})
    return Reply(status, headers, orjson.dumps(body, option=orjson.OPT_INDENT_2))


def _text(status: int, text: str) -> Reply:
    headers: CIMultiDict[str] = CIMultiDict({"content-type": "text/plain; charset=utf-8"})
    return Reply(status, headers, text.encode())
