"""The counters a limit check touches, and their exact arithmetic.

Three kinds, the same in memory and in the Redis script:
- `RATE` (GCRA): a rolling limit of `limit` units per `period` seconds. The
  state is one number, the theoretical arrival time; a call of `cost` units
  is admitted when it fits within one period of capacity. There is no window
  edge, so no double burst.
- `WINDOW`: a calendar budget (day or month, UTC): units used in the current
  window, which is part of the key and expires with it.
- `CONCURRENT`: calls in flight, each holding a lease until it ends.

A check is all or nothing: if any cell refuses, no cell is charged. Spending
is settled afterwards by a signed `delta` (refund or extra charge).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

RATE = "g"
WINDOW = "w"
CONCURRENT = "c"
EPSILON = 1e-9


@dataclass(slots=True)
class Cell:
    key: str
    kind: str
    limit: float
    period: float  # RATE: seconds; WINDOW: the window's end (epoch seconds); CONCURRENT: 0
    cost: float  # units taken now (reservation); CONCURRENT: 1


@dataclass(slots=True)
class Outcome:
    """A cell's state after the check: what the rate-limit headers report."""

    remaining: float
    reset_after: float  # seconds until the cell is back at its full limit
    retry_after: float  # when refused: seconds until this call would fit; inf: never


@dataclass(slots=True)
class Checked:
    admitted: bool
    outcomes: list[Outcome]


def rate_check(
    tat: float, now: float, limit: float, period: float, cost: float
) -> tuple[bool, float, Outcome]:
    """GCRA: returns (admitted, new tat, outcome). `tat` 0 means a fresh key."""
    interval = period / limit
    base = max(tat, now)
    new = base + cost * interval
    if new - now > period + EPSILON:
        retry = math.inf if cost > limit else new - now - period
        remaining = max(0.0, math.floor((period - (base - now)) / interval + EPSILON))
        return False, tat, Outcome(remaining, base - now, retry)
    remaining = max(0.0, math.floor((period - (new - now)) / interval + EPSILON))
    return True, new, Outcome(remaining, new - now, 0.0)


def rate_settle(tat: float, now: float, limit: float, period: float, delta: float) -> float:
    interval = period / limit
    if delta >= 0:
        return max(tat, now) + delta * interval
    return max(tat + delta * interval, now)


def window_check(
    used: float, now: float, limit: float, end: float, cost: float
) -> tuple[bool, float, Outcome]:
    new = used + cost
    if new > limit + EPSILON:
        retry = math.inf if cost > limit else max(0.0, end - now)
        return False, used, Outcome(max(0.0, limit - used), max(0.0, end - now), retry)
    return True, new, Outcome(max(0.0, limit - new), max(0.0, end - now), 0.0)


def concurrent_check(count: int, limit: float) -> tuple[bool, Outcome]:
    if count + 1 > limit:
        return False, Outcome(0.0, 1.0, 1.0)
    return True, Outcome(limit - count - 1, 0.0, 0.0)
