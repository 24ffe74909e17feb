"""Deadlines, retries, breakers and fallbacks as the bundle sets them, compiled once per load."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sidecar.resilience.breaker import BreakerPolicy
from sidecar.resilience.budget import BudgetPolicy

# Statuses are not retried unless the bundle says so: the OpenAI and Anthropic SDKs
# retry 429 and 5xx themselves, and two layers of retries multiply an outage's load.
DEFAULT_RETRY_STATUSES: frozenset[int] = frozenset()
DEFAULT_FALLBACK_ON = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 10.0
    first_byte: float = 600.0  # reasoning models can think for minutes before answering
    idle: float = 600.0
    total: float | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 2  # in all, the first included
    statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    on_connect: bool = True
    on_reset: bool = True
    on_timeout: bool = False  # a first-byte timeout: the upstream may still be working
    backoff: float = 0.25
    max_backoff: float = 10.0
    budget: BudgetPolicy = field(default_factory=BudgetPolicy)

    def delay(self, retry: int, hint: float | None, rng: random.Random) -> float:
        """Full jitter over an exponential ceiling; the upstream's own hint wins when given."""
        if hint is not None:
            return min(hint, self.max_backoff)
        ceiling = min(self.max_backoff, self.backoff * (2.0**retry))
        return rng.uniform(0.0, ceiling)


@dataclass(frozen=True, slots=True)
class UpstreamPolicy:
    timeouts: Timeouts = field(default_factory=Timeouts)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)


DEFAULT_POLICY = UpstreamPolicy()


def compile_upstream_policy(cfg: Mapping[str, Any]) -> UpstreamPolicy:
    t = cfg.get("timeouts") or {}
    timeouts = Timeouts(
        connect=_s(t.get("connect_ms"), 10.0),
        first_byte=_s(t.get("first_byte_ms"), 600.0),
        idle=_s(t.get("idle_ms"), 600.0),
        total=_s(t.get("total_ms"), None),
    )
    r = cfg.get("retry") or {}
    on = r.get("on")
    budget = r.get("budget") or {}
    retry = RetryPolicy(
        attempts=int(r.get("attempts", 2)),
        statuses=frozenset(x for x in on if isinstance(x, int))
        if on is not None
        else DEFAULT_RETRY_STATUSES,
        on_connect="connect" in on if on is not None else True,
        on_reset="reset" in on if on is not None else True,
        on_timeout="timeout" in on if on is not None else False,
        backoff=_s(r.get("backoff_ms"), 0.25),
        max_backoff=_s(r.get("max_backoff_ms"), 10.0),
        budget=BudgetPolicy(
            ratio=float(budget.get("ratio", 0.2)),
            window=int(budget.get("window_s", 10)),
            min_retries=int(budget.get("min_retries", 3)),
        ),
    )
    b = cfg.get("breaker") or {}
    breaker = BreakerPolicy(
        consecutive_failures=int(b.get("consecutive_failures", 5)),
        failure_ratio=float(b.get("failure_ratio", 0.5)),
        window=float(b.get("window_s", 30)),
        min_calls=int(b.get("min_calls", 20)),
        open_for=_s(b.get("open_ms"), 5.0),
        max_open_for=_s(b.get("max_open_ms"), 60.0),
        probes=int(b.get("probes", 2)),
    )
    return UpstreamPolicy(timeouts, retry, breaker)


def _s(ms: Any, default: Any) -> Any:
    return default if ms is None else float(ms) / 1000.0
