"""Giving memory back to the system after large request bodies.

glibc raises its mmap threshold each time a large block is freed, so after one
16 MiB body later bodies land on the heap, and a heap fragmented by a body's
pieces is not returned when they are freed: RSS stays at its peak. Fixing the
threshold keeps large buffers in their own mappings (freed at once), and
`malloc_trim` returns the free top of the heap. Both are glibc calls; on
another libc (musl in some images) they are skipped and nothing else changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Any

log = logging.getLogger("sidecar.memory")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value, kept fixed
TRIM_THRESHOLD = 1024 * 1024

_libc: Any = None


def _glibc() -> Any:
    global _libc
    if _libc is None:
        libc: Any
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            libc.malloc_trim.argtypes = [ctypes.c_size_t]
            libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        except (OSError, AttributeError):
            libc = False
        _libc = libc
    return _libc


def tune_malloc() -> None:
    """Fix glibc's mmap and trim thresholds (once, at start)."""
    libc = _glibc()
    if libc:
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def trim() -> None:
    """Return the heap's free pages to the system (well under a millisecond here)."""
    libc = _glibc()
    if libc:
        libc.malloc_trim(0)
