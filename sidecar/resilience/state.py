"""What resilience remembers between calls: breakers, retry budgets, first-answer latency.

Kept per process and keyed by upstream name and origin, so a bundle reload that
keeps an upstream keeps its breaker's verdict (a reload must not reopen the
floodgates to a provider that is down).
"""

from __future__ import annotations

import collections

from sidecar.bundle.snapshot import UpstreamSpec
from sidecar.resilience.breaker import HALF_OPEN, OPEN, Breaker
from sidecar.resilience.budget import RetryBudget
from sidecar.resilience.policy import UpstreamPolicy

LATENCY_SAMPLES = 200  # recent first-answer times kept per route, for hedging at p95
MIN_SAMPLES = 20


class ResilienceState:
    def __init__(self) -> None:
        self._breakers: dict[tuple[str, str], Breaker] = {}
        self._budgets: dict[tuple[str, str], RetryBudget] = {}
        self._latency: dict[str, collections.deque[float]] = {}

    def breaker(self, spec: UpstreamSpec, policy: UpstreamPolicy) -> Breaker:
        key = (spec.name, spec.origin)
        found = self._breakers.get(key)
        if found is None:
            found = self._breakers[key] = Breaker(spec.name, policy.breaker)
        elif found.policy is not policy.breaker and found.policy != policy.breaker:
            found.policy = policy.breaker  # a reload changed the thresholds; keep the state
        return found

    def budget(self, spec: UpstreamSpec, policy: UpstreamPolicy) -> RetryBudget:
        key = (spec.name, spec.origin)
        found = self._budgets.get(key)
        if found is None or (
            found.policy is not policy.retry.budget and found.policy != policy.retry.budget
        ):
            found = self._budgets[key] = RetryBudget(policy.retry.budget)
        return found

    def breakers(self) -> dict[str, str]:
        """Upstream name -> breaker state, for /readyz. An open breaker whose period has
        passed reads half-open: the next call to it is a probe."""
        return {
            b.name: HALF_OPEN if b.state == OPEN and b.retry_after() == 0 else b.state
            for b in self._breakers.values()
        }

    def record_latency(self, route: str, seconds: float) -> None:
        samples = self._latency.get(route)
        if samples is None:
            samples = self._latency[route] = collections.deque(maxlen=LATENCY_SAMPLES)
        samples.append(seconds)

    def p95(self, route: str) -> float | None:
        samples = self._latency.get(route)
        if samples is None or len(samples) < MIN_SAMPLES:
            return None
        ordered = sorted(samples)  # at most 200 floats, at most once per hedged call
        return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
