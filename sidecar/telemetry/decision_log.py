"""The decision log: one JSON line per call decision, for auditors.

Lines are queued and written by one thread, so the event loop never waits on
a disk or a full pipe. If the writer falls behind by more than the queue
holds, lines are dropped and counted (`sidecar_decision_log_dropped_total`),
never silently. Fields whose names look secret are masked wherever they
appear; message content is logged only when the operator opts in.
"""

from __future__ import annotations

import contextlib
import queue
import re
import sys
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

import orjson

QUEUE_LIMIT = 10_000
MASK = "***"
_SECRET_NAME = re.compile(
    r"(?i)(?:^|[_.-])(?:secret|password|passwd|api[_-]?key|apikey|authorization|auth|"
    r"credentials?|cookie|private[_-]?key|token|bearer|jwt)$"
)


def mask(value: Any) -> Any:
    """Replace the value of any field whose name looks like a credential, at any depth."""
    if isinstance(value, dict):
        return {
            k: (MASK if isinstance(k, str) and _SECRET_NAME.search(k) else mask(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask(v) for v in value]
    return value


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
        if not self.enabled:
            return
        line = orjson.dumps(mask(entry), default=str) + b"\n"
        try:
            self._queue.put_nowait(line)
        except queue.Full:
            if self._on_drop is not None:
                self._on_drop()

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            batch = [first]
            while len(batch) < 512:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            lines = [b for b in batch if b is not None]
            if lines:
                try:
                    self._out.write(b"".join(lines))
                    self._out.flush()
                except (OSError, ValueError):
                    if self._on_drop is not None:
                        for _ in lines:
                            self._on_drop()
            if None in batch:
                return

    def close(self) -> None:
        """Write what is queued, then stop the writer."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout=5)
        self._thread = None
        if self.target not in ("stdout", "stderr"):
            with contextlib.suppress(OSError):
                self._out.close()
