"""The active bundle: one reference that a reload swaps, and what each request holds.

A request acquires the active generation (snapshot plus live upstream
transports) and releases it when its response, stream included, is done.
A retired generation closes the transports nothing else uses once its last
request ends, so a stream started before a reload finishes on the old routes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidecar.bundle.compile import BundleInvalid, compile_bundle
from sidecar.bundle.load import DEFAULT_LIMITS, BundleReadError, ReadLimits, read_bundle
from sidecar.bundle.public import public_problem, public_text, public_warning
from sidecar.bundle.snapshot import Snapshot, UpstreamSpec
from sidecar.bundle.validate import Problem
from sidecar.telemetry.instruments import Instruments
from sidecar.upstream.base import Transport
from sidecar.upstream.http import HttpTransport
from sidecar.upstream.mock import MockTransport

log = logging.getLogger("sidecar.bundle")


@dataclass(eq=False)
class Generation:
    snapshot: Snapshot
    transports: dict[str, Transport]
    inflight: int = 0
    retired: bool = False
    specs: list[UpstreamSpec] = field(default_factory=list)
    # Each surface's chain as this bundle uses it (`sidecar.chain`), built on first use.
    chains: dict[str, Any] = field(default_factory=dict)


class BundleStore:
    def __init__(
        self, source: str | Path, instruments: Instruments, limits: ReadLimits = DEFAULT_LIMITS
    ) -> None:
        self.source = str(source)
        self._limits = limits
        self._instruments = instruments
        self.active: Generation | None = None
        self.last_error: dict[str, Any] | None = None
        self._transports: dict[UpstreamSpec, tuple[Transport, int]] = {}
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    # --- the request side ----------------------------------------------------------------

    def acquire(self) -> Generation | None:
        gen = self.active
        if gen is not None:
            gen.inflight += 1
        return gen

    def release(self, gen: Generation) -> None:
        gen.inflight -= 1
        if gen.retired and gen.inflight == 0:
            self._drop(gen)

    # --- the reload side -----------------------------------------------------------------

    async def load(self, *, force: bool = False, reason: str = "start") -> str:
        """Read, validate, compile and activate; returns success, unchanged or error."""
        async with self._lock:
            result = await self._load(force, reason)
        self._instruments.bundle_reloads.add(1, (result,))
        return result

    async def _load(self, force: bool, reason: str) -> str:
        try:
            raw = await asyncio.to_thread(read_bundle, self.source, self._limits)
            if not force and self.active and raw.digest == self.active.snapshot.digest:
                # A bad edit reverted: what is on disk is what serves, nothing is wrong.
                self.last_error = None
                return "unchanged"
            snapshot = await asyncio.to_thread(compile_bundle, raw)
        except (BundleReadError, BundleInvalid) as exc:
            problems: list[Problem | str] = (
                list(exc.problems) if isinstance(exc, BundleInvalid) else [str(exc)]
            )
            self._reject(reason, problems)
            return "error"
        except Exception as exc:  # no bundle may take the sidecar down
            # A defect reached through bundle content (a parser's recursion, a
            # library's own error): reject the bundle like any other, and keep
            # the traceback for the log only.
            log.error("bundle load failed", exc_info=True, extra={"source": self.source})
            self._reject(reason, [f"the bundle could not be loaded ({type(exc).__name__})"])
            return "error"
        self._activate(snapshot)
        self.last_error = None
        log.info(
            "bundle active",
            extra={
                "source": self.source,
                "revision": snapshot.revision,
                "digest": snapshot.digest[:12],
                "reason": reason,
                "warnings": list(snapshot.warnings),
            },
        )
        return "success"

    def _reject(self, reason: str, problems: list[Problem | str]) -> None:
        """Keep the active bundle; the log gets every detail, `/bundle` a public form."""
        self.last_error = {
            "at": _iso(time.time()),
            "reason": reason,
            "problems": [public_problem(p) for p in problems],
        }
        kept = self.active.snapshot.revision if self.active else None
        log.error(
            "bundle rejected",
            extra={
                "source": self.source,
                "problems": [str(p) for p in problems],
                "kept_revision": kept,
            },
        )

    def _activate(self, snapshot: Snapshot) -> None:
        transports: dict[str, Transport] = {}
        specs = list(snapshot.upstreams.values())
        for spec in specs:
            held = self._transports.get(spec)
            if held is None:
                transport: Transport = (
                    MockTransport(spec) if spec.kind == "mock" else HttpTransport(spec)
                )
                self._transports[spec] = (transport, 1)
            else:
                transport = held[0]
                self._transports[spec] = (transport, held[1] + 1)
            transports[spec.name] = transport
        old, self.active = self.active, Generation(snapshot, transports, specs=specs)
        if old is not None:
            old.retired = True
            if old.inflight == 0:
                self._drop(old)

    def _drop(self, gen: Generation) -> None:
        for spec in gen.specs:
            transport, refs = self._transports[spec]
            if refs > 1:
                self._transports[spec] = (transport, refs - 1)
                continue
            del self._transports[spec]
            self._spawn_close(transport.close())
        gen.specs = []
        if gen.snapshot.identity.jwt is not None:
            self._spawn_close(gen.snapshot.identity.jwt.close())

    def _spawn_close(self, closing: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(closing)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        for transport, _ in self._transports.values():
            await transport.close()
        if self.active is not None and self.active.snapshot.identity.jwt is not None:
            await self.active.snapshot.identity.jwt.close()
        self._transports.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def status(self) -> dict[str, Any]:
        snap = self.active.snapshot if self.active else None
        return {
            "ready": snap is not None,
            "source": public_text(self.source),
            "revision": snap.revision if snap else None,
            "digest": snap.digest if snap else None,
            "loaded_at": _iso(snap.loaded_at) if snap else None,
            "upstreams": sorted(snap.upstreams) if snap else [],
            "routes": len(snap.routes) if snap else 0,
            "warnings": [public_warning(w) for w in snap.warnings] if snap else [],
            "last_error": self.last_error,
        }


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"
