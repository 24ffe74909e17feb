"""A circuit breaker per upstream: stop sending to a provider that is down.

Closed: calls pass; failures are counted (consecutive, and as a ratio over a
rolling window once it holds enough calls). Open: calls fail over at once for
a delay that doubles each time the provider is found still down. Half-open:
a bounded number of probe calls decide — all succeed, it closes; one fails, it
opens again for longer. A success while closed resets the consecutive count.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    consecutive_failures: int = 5
    failure_ratio: float = 0.5
    window: float = 30.0  # seconds
    min_calls: int = 20
    open_for: float = 5.0  # first open period, seconds; doubles while still down
    max_open_for: float = 60.0
    probes: int = 2


class Breaker:
    __slots__ = (
        "_calls",
        "_consecutive",
        "_failures",
        "_generation",
        "_opened_at",
        "_opens",
        "_probes_in_flight",
        "_probes_passed",
        "_stamps",
        "name",
        "policy",
        "state",
    )

    def __init__(self, name: str, policy: BreakerPolicy) -> None:
        self.name = name
        self.policy = policy
        self.state = CLOSED
        self._consecutive = 0
        # The rolling window in one-second buckets: constant memory at any call rate.
        size = max(1, int(policy.window))
        self._stamps = [-1] * size
        self._calls = [0] * size
        self._failures = [0] * size
        self._opened_at = 0.0
        self._opens = 0  # consecutive open periods, for the growing delay
        self._probes_in_flight = 0
        self._probes_passed = 0
        # Bumped on every change of state: a call's verdict counts only in the state it
        # was admitted in (a call begun while closed is no probe of a half-open breaker).
        self._generation = 1

    def open_for(self) -> float:
        p = self.policy
        return float(min(p.max_open_for, p.open_for * 2.0 ** max(0, self._opens - 1)))

    def retry_after(self, now: float | None = None) -> float:
        """Seconds until the breaker lets a probe through (0 when it would now)."""
        if self.state != OPEN:
            return 0.0
        now = time.monotonic() if now is None else now
        return max(0.0, self._opened_at + self.open_for() - now)

    def allow(self, now: float | None = None) -> int | None:
        """May a call go to this upstream now? A ticket for `record`, or None.

        In half-open, a ticket takes a probe slot.
        """
        if self.state == CLOSED:
            return self._generation
        now = time.monotonic() if now is None else now
        if self.state == OPEN:
            if now < self._opened_at + self.open_for():
                return None
            self.state = HALF_OPEN
            self._generation += 1
            self._probes_in_flight = 0
            self._probes_passed = 0
        if self._probes_in_flight + self._probes_passed >= self.policy.probes:
            return None
        self._probes_in_flight += 1
        return self._generation

    def available(self, now: float | None = None) -> bool:
        """Would `allow` let a call through now? (Takes nothing.)"""
        if self.state == CLOSED:
            return True
        now = time.monotonic() if now is None else now
        if self.state == OPEN:
            return now >= self._opened_at + self.open_for()
        return self._probes_in_flight + self._probes_passed < self.policy.probes

    def record(self, ok: bool, now: float | None = None, ticket: int | None = None) -> None:
        if ticket is not None and ticket != self._generation:
            return  # admitted under an earlier state: no verdict on this one
        now = time.monotonic() if now is None else now
        if self.state == HALF_OPEN:
            self._probes_in_flight = max(0, self._probes_in_flight - 1)
            if not ok:
                self._open(now)
                return
            self._probes_passed += 1
            if self._probes_passed >= self.policy.probes:
                self._close()
            return
        if self.state == OPEN:
            return  # a call that started before the breaker opened
        self._window(now, ok)
        if ok:
            self._consecutive = 0
            return
        self._consecutive += 1
        p = self.policy
        if self._consecutive >= p.consecutive_failures:
            self._open(now)
            return
        calls, failures = self._totals(now)
        if calls >= p.min_calls and failures / calls >= p.failure_ratio:
            self._open(now)

    def release(self, ticket: int | None = None) -> None:
        """A call that took a probe slot ended without a verdict (cancelled)."""
        if ticket is not None and ticket != self._generation:
            return
        if self.state == HALF_OPEN:
            self._probes_in_flight = max(0, self._probes_in_flight - 1)

    def _window(self, now: float, ok: bool) -> None:
        if len(self._stamps) != max(1, int(self.policy.window)):
            self._reset_window()  # a reload changed the window
        second = int(now)
        i = second % len(self._stamps)
        if self._stamps[i] != second:
            self._stamps[i] = second
            self._calls[i] = 0
            self._failures[i] = 0
        self._calls[i] += 1
        if not ok:
            self._failures[i] += 1

    def _totals(self, now: float) -> tuple[int, int]:
        horizon = int(now) - len(self._stamps)
        calls = failures = 0
        for stamp, c, f in zip(self._stamps, self._calls, self._failures, strict=True):
            if stamp > horizon:
                calls += c
                failures += f
        return calls, failures

    def _reset_window(self) -> None:
        size = max(1, int(self.policy.window))
        self._stamps = [-1] * size
        self._calls = [0] * size
        self._failures = [0] * size

    def _open(self, now: float) -> None:
        self.state = OPEN
        self._generation += 1
        self._opened_at = now
        self._opens += 1
        self._consecutive = 0
        self._reset_window()

    def _close(self) -> None:
        self.state = CLOSED
        self._generation += 1
        self._opens = 0
        self._consecutive = 0
        self._reset_window()
