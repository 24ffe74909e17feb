"""The decision log: one JSON line per call decision, for auditors.

Lines are gathered on the event loop and handed, a batch at a time (every
100 ms or 256 lines), to one writer thread, so the loop never waits on a
disk or a full pipe and the two threads do not wake each other per call.
If the writer falls behind by more than the queue holds, lines are dropped
and counted (`sidecar_decision_log_dropped_total`), never silently. Fields
whose names look secret are masked wherever they appear; message content is
logged only when the operator opts in.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import re
import sys
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

import orjson

QUEUE_LIMIT = 64  # batches
BATCH_LINES = 256
FLUSH_EVERY_S = 0.1
MASK = "***"
_SECRET_NAME = re.compile(
    r"(?i)(?:^|[_.-])(?:secret|password|passwd|api[_-]?key|apikey|authorization|auth|"
    r"credentials?|cookie|private[_-]?key|token|bearer|jwt)$"
)


_SAFE_NAMES: set[str] = set()  # names already checked and found harmless
_SAFE_LIMIT = 4096


def mask(value: Any) -> Any:
    """Replace the value of any field whose name looks like a credential, at any depth.

    Returns the value itself when nothing needed masking, so the common case
    copies nothing; names already found harmless cost a set lookup.
    """
    if isinstance(value, dict):
        out: dict[Any, Any] | None = None
        for k, v in value.items():
            if k in _SAFE_NAMES:
                if v.__class__ is not dict and v.__class__ is not list:
                    continue
                new: Any = mask(v)
                if new is v:
                    continue
            elif isinstance(k, str) and _SECRET_NAME.search(k):
                new = MASK
            else:
                if isinstance(k, str) and len(_SAFE_NAMES) < _SAFE_LIMIT:
                    _SAFE_NAMES.add(k)
                if not isinstance(v, (dict, list)):
                    continue
                new = mask(v)
                if new is v:
                    continue
            if out is None:
                out = dict(value)
            out[k] = new
        return value if out is None else out
    if isinstance(value, list):
        if not any(isinstance(v, (dict, list)) for v in value):
            return value
        items = [mask(v) if isinstance(v, (dict, list)) else v for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


# The fields the pipeline writes, checked once here: an entry made only of these
# skips the per-field scan. Any other field (a future addition) is masked by name.
ENTRY_FIELDS = frozenset(
    {
        "ts", "decision_id", "trace_id", "span_id", "bundle_revision", "principal", "tenant",
        "agent", "user", "roles", "identity_via", "action", "resource", "result", "policies",
        "reasons", "authz_us", "status", "error_type", "upstream", "stream", "usage",
        "duration_ms", "content", "guards",
    }
)  # fmt: skip
assert not any(_SECRET_NAME.search(name) for name in ENTRY_FIELDS)


class DecisionLog:
    def __init__(
        self,
        target: str,
        *,
        include_content: bool = False,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self.target = target
        self.include_content = include_content
        self.enabled = target != "none"
        self._on_drop = on_drop
        self._queue: queue.Queue[bytes | None] = queue.Queue(QUEUE_LIMIT)
        self._thread: threading.Thread | None = None
        self._pending: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None
        if self.enabled:
            self._out = self._open(target)
            self._thread = threading.Thread(
                target=self._write_loop, name="sidecar-decision-log", daemon=True
            )
            self._thread.start()

    @staticmethod
    def _open(target: str) -> BinaryIO:
        if target == "stdout":
            return sys.stdout.buffer
        if target == "stderr":
            return sys.stderr.buffer
        return open(target, "ab")

    def record(self, entry: dict[str, Any]) -> None:
        """Called on the event loop; costs a serialization and a list append."""
        if not self.enabled:
            return
        if not entry.keys() <= ENTRY_FIELDS:
            entry = mask(entry)
        self._pending.append(orjson.dumps(entry, default=str) + b"\n")
        if len(self._pending) >= BATCH_LINES:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
            else:
                self._timer = loop.call_later(FLUSH_EVERY_S, self.flush)

    def flush(self) -> None:
        """Hand what is gathered to the writer thread."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        try:
            self._queue.put_nowait(b"".join(lines))
        except queue.Full:
            if self._on_drop is not None:
                for _ in lines:
                    self._on_drop()

    def _write_loop(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            try:
                self._out.write(batch)
                self._out.flush()
            except (OSError, ValueError):
                if self._on_drop is not None:
                    for _ in range(batch.count(b"\n")):
                        self._on_drop()

    def close(self) -> None:
        """Write what is gathered and queued, then stop the writer."""
        if self._thread is None:
            return
        self.flush()
        self._queue.put(None)
        self._thread.join(timeout=5)
        self._thread = None
        if self.target not in ("stdout", "stderr"):
            with contextlib.suppress(OSError):
                self._out.close()
