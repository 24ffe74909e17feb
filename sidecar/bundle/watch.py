"""Reload the bundle when its directory changes, or on SIGHUP.

The watch is on the bundle's *directory*, not its files: Kubernetes updates
a mounted ConfigMap by swapping the `..data` symlink, which a watch on
`bundle.yaml` itself would never see. Events are debounced and a reload
whose content hash is unchanged does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import watchfiles

from sidecar.bundle.store import BundleStore

log = logging.getLogger("sidecar.bundle")

DEBOUNCE_MS = 150


async def watch_bundle(store: BundleStore, stop: asyncio.Event) -> None:
    source = Path(store.source)
    while not stop.is_set():
        is_dir = await asyncio.to_thread(source.is_dir)
        target = source if is_dir else source.parent
        if not await asyncio.to_thread(target.exists):
            # Nothing to watch yet (a volume not mounted): look again shortly.
            await _sleep_or_stop(stop, 1.0)
            continue
        try:
            async for _changes in watchfiles.awatch(
                target,
                stop_event=stop,
                debounce=DEBOUNCE_MS,
                step=50,
                recursive=is_dir,
                watch_filter=None,
                ignore_permission_denied=True,
            ):
                await store.load(reason="watch")
        except (OSError, RuntimeError) as exc:
            log.warning("bundle watch failed; retrying", extra={"error": str(exc)})
            await _sleep_or_stop(stop, 1.0)
        else:
            if stop.is_set():
                break
            # awatch ends when the watched directory itself disappears: reattach.
            await store.load(reason="watch")
            await _sleep_or_stop(stop, 0.2)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def default_bundle_path() -> Path:
    """The embedded default bundle: packaged copy, else the repository's."""
    packaged = Path(__file__).parent / "default"
    if (packaged / "bundle.yaml").is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / "policy_bundles" / "default"
