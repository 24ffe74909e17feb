"""Limit state in this process: exact under concurrency because the event loop is one thread.

A check runs start to finish without an `await`, so no two calls interleave
inside it. The state outlives bundle reloads (a ConfigMap edit must not reset
anyone's budget) and is bounded: keys whose state equals a fresh key's (a rate
cell whose capacity is back, a window that ended, no calls in flight) are
dropped in a sweep, and past `max_keys` the least recently used keys go.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Sequence

from sidecar.limits.cells import (
    CONCURRENT,
    EPSILON,
    RATE,
    WINDOW,
    Cell,
    Checked,
    Outcome,
    concurrent_check,
    rate_check,
    rate_settle,
    window_check,
)

MAX_KEYS = 100_000
SWEEP_EVERY = 10_000  # checks between sweeps of idle keys


class MemoryStore:
    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self._state: OrderedDict[str, float] = OrderedDict()
        self._leases: dict[str, int] = {}
        self._max_keys = max_keys
        self._checks = 0
        self.evicted = 0  # keys dropped while still holding state (past max_keys)

    def __len__(self) -> int:
        return len(self._state) + len(self._leases)

    def state(self) -> dict[str, float]:
        return {**self._state, **{k: float(v) for k, v in self._leases.items()}}

    def check(self, cells: Sequence[Cell], now: float | None = None) -> Checked:
        wall = time.time() if now is None else now
        mono = time.monotonic() if now is None else now
        state = self._state
        outcomes: list[Outcome] = []
        news: list[float] = []
        admitted = True
        for cell in cells:
            kind = cell.kind
            if kind == RATE:
                # cells.rate_check, inlined: this loop is the hot path of every limited call.
                period = cell.period
                interval = period / cell.limit
                tat = state.get(cell.key, 0.0)
                base = tat if tat > mono else mono
                new = base + cell.cost * interval
                if new - mono <= period + EPSILON:
                    ok = True
                    left = math.floor((period - (new - mono)) / interval + EPSILON)
                    outcome = Outcome(left if left > 0 else 0.0, new - mono, 0.0)
                else:
                    ok, new, outcome = rate_check(tat, mono, cell.limit, period, cell.cost)
            elif kind == WINDOW:
                ok, new, outcome = window_check(
                    state.get(cell.key, 0.0), wall, cell.limit, cell.period, cell.cost
                )
            else:
                ok, outcome = concurrent_check(self._leases.get(cell.key, 0), cell.limit)
                new = 0.0
            admitted = admitted and ok
            outcomes.append(outcome)
            news.append(new)
        if admitted:
            for cell, new in zip(cells, news, strict=True):
                if cell.kind == CONCURRENT:
                    self._leases[cell.key] = self._leases.get(cell.key, 0) + 1
                else:
                    state[cell.key] = new
                    state.move_to_end(cell.key)
            self._checks += 1
            if self._checks % SWEEP_EVERY == 0 or len(state) > self._max_keys:
                self._sweep(mono, wall)
        else:
            for cell in cells:  # a key being refused is in use: not the first to evict
                if cell.key in state:
                    state.move_to_end(cell.key)
        return Checked(admitted, outcomes)

    def settle(
        self, cells: Sequence[Cell], deltas: Sequence[float], now: float | None = None
    ) -> None:
        """Adjust by what the call really spent (`deltas`, signed); release leases."""
        wall = time.time() if now is None else now
        mono = time.monotonic() if now is None else now
        state = self._state
        for cell, delta in zip(cells, deltas, strict=True):
            if cell.kind == CONCURRENT:
                left = self._leases.get(cell.key, 0) - 1
                if left > 0:
                    self._leases[cell.key] = left
                else:
                    self._leases.pop(cell.key, None)
            elif delta == 0:
                continue
            elif cell.kind == RATE:
                state[cell.key] = rate_settle(
                    state.get(cell.key, 0.0), mono, cell.limit, cell.period, delta
                )
            elif cell.kind == WINDOW and cell.period > wall:  # the window is still current
                state[cell.key] = max(0.0, state.get(cell.key, 0.0) + delta)

    def _sweep(self, mono: float, wall: float) -> None:
        state = self._state
        # A rate key's value is a time on the monotonic clock, a window's is an amount;
        # a key's kind is its last character (see Limiter), so each is judged by its own.
        idle = [
            key
            for key, value in state.items()
            if (key[-1] == RATE and value <= mono) or (key[-1] == WINDOW and _ended(key, wall))
        ]
        for key in idle:
            del state[key]
        # Down to 90 % of the bound, so the next sweep is thousands of checks away rather
        # than on every new key (a sweep reads every key).
        while len(state) > self._max_keys * 0.9:
            state.popitem(last=False)
            self.evicted += 1


def _ended(key: str, wall: float) -> bool:
    # Window keys end with "|<end epoch>|w".
    try:
        return float(key.rsplit("|", 2)[1]) <= wall
    except (IndexError, ValueError):
        return False
