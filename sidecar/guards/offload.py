"""Where a guard's scan runs: on the event loop when it is small, on a worker when not.

A detector is pure Python and `re`, which never release the GIL, so a worker
thread does not scan faster; what it buys is fairness. The interpreter hands
the GIL back to the event loop every switch interval (5 ms), so a scan of
seconds costs the loop a few milliseconds at a time instead of freezing every
stream and probe beside it. Handing a scan over costs about 0.1 ms, more than
a typical chat message takes to scan, so texts up to `INLINE_SCAN_CHARS`
(worst case, phone-dense text for the PII guard, about 10 ms) stay inline;
bench/guard_offload_bench.py measures both sides of that threshold.

Two workers: scans take turns on the GIL anyway, and a second one keeps a
short scan from queueing behind a long one. A scan already handed over runs
to its end even if its call is abandoned; `scan_limit` bounds how long that is.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

INLINE_SCAN_CHARS = 4096
SCAN_WORKERS = 2

T = TypeVar("T")
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    """Started on the first large scan: a sidecar that never sees one never pays for it."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=SCAN_WORKERS, thread_name_prefix="guard-scan")
        return _pool


def inline(size: int) -> bool:
    """Whether a scan of `size` characters runs on the event loop (see `run`)."""
    return size <= INLINE_SCAN_CHARS


async def run(size: int, work: Callable[[], T]) -> T:
    """`work` inline when it reads `size` characters or fewer, else on a scan worker."""
    if inline(size):
        return work()
    return await asyncio.get_running_loop().run_in_executor(_executor(), work)
