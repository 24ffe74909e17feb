"""Assemble and run the sidecar: bundle store, pipeline, listeners, watcher, signals."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from pathlib import Path

from sidecar.bounds import ResponseBounds
from sidecar.bundle.store import BundleStore
from sidecar.bundle.watch import default_bundle_path, watch_bundle
from sidecar.identity.principal import PodIdentity
from sidecar.limits.limiter import LimitStores
from sidecar.pipeline import Pipeline
from sidecar.server.admin import admin_server
from sidecar.server.h1 import Server
from sidecar.server.http import proxy_server
from sidecar.settings import Listen, Settings
from sidecar.telemetry.decision_log import DecisionLog
from sidecar.telemetry.setup import Telemetry, setup_telemetry

log = logging.getLogger("sidecar")


def tune_gc() -> None:
    """Make the cyclic collector cheaper for a request server.

    Every request allocates thousands of short-lived containers that reference
    counting frees; at CPython's default threshold (700) the collector runs
    every few requests and rescans whatever is in flight. Freezing what exists
    once serving starts (modules, bundle, sessions) and collecting the young
    generation less often saved about 12 us of CPU per proxied call in
    alternating runs (bench/README.md); cycles are still collected.
    """
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


GC_GEN0_THRESHOLD = 10_000
SHUTDOWN_GRACE_S = 5.0  # the admin listener's own grace on stop


class Sidecar:
    """One running sidecar. `start()` binds the listeners; `stop()` closes everything."""

    def __init__(self, settings: Settings, telemetry: Telemetry | None = None) -> None:
        self.settings = settings
        self.telemetry = telemetry or setup_telemetry(settings.otel_exporter)
        source: Path = settings.bundle or default_bundle_path()
        self.store = BundleStore(source, self.telemetry.instruments, settings.bundle_limits)
        dropped = self.telemetry.instruments.decision_log_dropped
        self.decision_log = DecisionLog(
            settings.decision_log,
            include_content=settings.decision_log_content,
            on_drop=lambda: dropped.add(1, ()),
        )
        pending = self.telemetry.instruments.settlements_pending
        self.limit_stores = LimitStores(on_pending=lambda n: pending.set(n, ()))
        self.pipeline = Pipeline(
            self.telemetry,
            PodIdentity(settings.agent, settings.tenant),
            self.decision_log,
            self.limit_stores,
            bounds=ResponseBounds(
                settings.resources.max_event_bytes, settings.resources.max_response_bytes
            ),
        )
        self._admin: list[Server] = []  # the admin listener, then the probes one
        self._proxy: Server | None = None
        self._stop = asyncio.Event()
        self._watch: asyncio.Task[None] | None = None
        self.http_address: tuple[str, int] | None = None
        self.admin_address: tuple[str, int] | None = None
        self.probes_address: tuple[str, int] | None = None
        self.serving = False  # the proxy listener accepts calls

    async def start(self, *, watch: bool = True) -> None:
        # Admin first, so probes answer (not ready) while the first bundle loads.
        self.admin_address = await self._listen_admin(self.settings.admin)
        if self.settings.probes is not None:
            self.probes_address = await self._listen_admin(self.settings.probes, probes_only=True)
        await self.store.load(reason="start")
        self._proxy = proxy_server(
            self.store, self.pipeline, self.settings.max_body_bytes, self.settings.resources
        )
        self.http_address = await self._proxy.start(
            self.settings.http.host, self.settings.http.port
        )
        self.serving = True
        tune_gc()
        if watch:
            self._watch = asyncio.get_running_loop().create_task(
                watch_bundle(self.store, self._stop)
            )
        log.info(
            "listening",
            extra={
                "http": f"{self.http_address[0]}:{self.http_address[1]}",
                "admin": f"{self.admin_address[0]}:{self.admin_address[1]}",
                "probes": f"{self.probes_address[0]}:{self.probes_address[1]}"
                if self.probes_address
                else None,
                "bundle": self.store.source,
                "ready": self.store.active is not None,
            },
        )

    async def _listen_admin(self, where: Listen, *, probes_only: bool = False) -> tuple[str, int]:
        server = admin_server(
            self.store,
            self.telemetry,
            lambda: self.serving,
            lambda: {"breakers": self.pipeline.resilience.breakers()},
            probes_only=probes_only,
        )
        address = await server.start(where.host, where.port)
        self._admin.append(server)
        return address

    async def reload(self, reason: str = "sighup") -> str:
        return await self.store.load(force=True, reason=reason)

    async def stop(self) -> None:
        self.serving = False
        self._stop.set()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._proxy is not None:
            await self._proxy.stop(grace=self.settings.shutdown_grace)
            self._proxy = None
        for server in reversed(self._admin):
            await server.stop(grace=SHUTDOWN_GRACE_S)
        self._admin.clear()
        await self.store.close()
        await self.limit_stores.close()
        self.decision_log.flush()  # on the loop, where lines are gathered
        await asyncio.to_thread(self.decision_log.close)

    async def drain(self, interrupted: asyncio.Event | None = None) -> None:
        """SIGTERM: report not ready at once, keep accepting while the endpoints controller
        notices (`drain_delay`), then stop accepting and let calls in flight finish.
        `interrupted` (SIGINT) cuts the delay short."""
        self.serving = False
        log.info(
            "draining",
            extra={
                "drain_delay_s": self.settings.drain_delay,
                "grace_s": self.settings.shutdown_grace,
            },
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                (interrupted or asyncio.Event()).wait(), self.settings.drain_delay
            )

    async def run_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        graceful = asyncio.Event()
        reloads: set[asyncio.Task[str]] = set()

        def on_hup() -> None:
            task = loop.create_task(self.reload("sighup"))
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        interrupted = asyncio.Event()

        def on_term() -> None:
            graceful.set()
            done.set()

        def on_int() -> None:
            interrupted.set()
            done.set()

        loop.add_signal_handler(signal.SIGHUP, on_hup)
        loop.add_signal_handler(signal.SIGTERM, on_term)
        loop.add_signal_handler(signal.SIGINT, on_int)
        try:
            await self.start()
            await done.wait()
            if graceful.is_set() and not interrupted.is_set():
                await self.drain(interrupted)
            log.info("stopping")
        finally:
            await self.stop()
            self.telemetry.shutdown()
