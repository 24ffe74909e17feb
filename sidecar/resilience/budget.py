"""A retry budget per upstream: retries may be at most a fraction of recent calls.

During an outage every call fails, and unbounded retries would multiply the
load on a provider that is already down. Calls and retries are counted in
one-second buckets over a rolling window; a retry (or a hedge) is allowed
while retries stay under `ratio` x calls, plus a small floor so a quiet
upstream can still retry at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BudgetPolicy:
    ratio: float = 0.2
    window: int = 10  # seconds
    min_retries: int = 3  # per window, whatever the traffic


class RetryBudget:
    __slots__ = ("_calls", "_retries", "_stamps", "policy")

    def __init__(self, policy: BudgetPolicy) -> None:
        self.policy = policy
        size = max(1, policy.window)
        self._stamps = [-1] * size
        self._calls = [0] * size
        self._retries = [0] * size

    def _slot(self, now: float) -> int:
        second = int(now)
        i = second % len(self._stamps)
        if self._stamps[i] != second:
            self._stamps[i] = second
            self._calls[i] = 0
            self._retries[i] = 0
        return i

    def _totals(self, now: float) -> tuple[int, int]:
        horizon = int(now) - len(self._stamps)
        calls = retries = 0
        for stamp, c, r in zip(self._stamps, self._calls, self._retries, strict=True):
            if stamp > horizon:
                calls += c
                retries += r
        return calls, retries

    def record_call(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._calls[self._slot(now)] += 1

    def try_spend(self, now: float | None = None) -> bool:
        """Take one retry from the budget if there is one."""
        now = time.monotonic() if now is None else now
        calls, retries = self._totals(now)
        if retries + 1 > self.policy.ratio * calls + self.policy.min_retries:
            return False
        self._retries[self._slot(now)] += 1
        return True
