"""The breaker's state machine, the retry budget and the back-off arithmetic."""

from __future__ import annotations

import random

from sidecar.resilience.breaker import CLOSED, HALF_OPEN, OPEN, Breaker, BreakerPolicy
from sidecar.resilience.budget import BudgetPolicy, RetryBudget
from sidecar.resilience.policy import RetryPolicy


def test_consecutive_failures_open_the_breaker_and_a_success_resets_the_count() -> None:
    b = Breaker("u", BreakerPolicy(consecutive_failures=3, min_calls=1000))
    for ok in (False, False, True, False, False):
        b.record(ok, now=0.0)
    assert b.state == CLOSED
    b.record(False, now=0.0)
    assert b.state == OPEN and not b.allow(now=1.0)


def test_a_failure_ratio_over_the_window_opens_it() -> None:
    b = Breaker("u", BreakerPolicy(consecutive_failures=100, failure_ratio=0.5, min_calls=10))
    for i in range(9):
        b.record(i % 2 == 0, now=float(i))
    assert b.state == CLOSED  # 4 of 9 failed, and fewer than 10 calls
    b.record(False, now=9.0)
    assert b.state == OPEN  # 5 of 10
    old = Breaker("u", BreakerPolicy(consecutive_failures=100, window=5.0, min_calls=4))
    for t in (0.0, 1.0, 2.0):
        old.record(False, now=t)
    for t in (10.0, 11.0, 12.0, 13.0):
        old.record(True, now=t)  # the early failures left the window
    assert old.state == CLOSED


def test_half_open_probes_decide_and_the_open_period_grows() -> None:
    p = BreakerPolicy(consecutive_failures=1, open_for=1.0, max_open_for=3.0, probes=2)
    b = Breaker("u", p)
    b.record(False, now=0.0)
    assert b.retry_after(now=0.25) == 0.75
    assert b.allow(now=1.0) and b.state == HALF_OPEN
    assert b.allow(now=1.0)
    assert not b.allow(now=1.0)  # only two probes at a time
    b.record(True, now=1.1)
    b.record(False, now=1.2)  # one probe failed: open again, for longer
    assert b.state == OPEN and b.open_for() == 2.0
    assert not b.allow(now=3.0) and b.allow(now=3.3)
    b.allow(now=3.3)
    b.record(True, now=3.4)
    b.record(True, now=3.5)
    assert b.state == CLOSED and b.open_for() == 1.0
    b.record(False, now=4.0)
    for t in (5.1, 7.2, 10.3, 13.4):  # still down: 1, 2, then capped at 3 s
        assert b.allow(now=t)
        b.record(False, now=t)
    assert b.open_for() == 3.0


def test_a_cancelled_probe_gives_its_slot_back() -> None:
    b = Breaker("u", BreakerPolicy(consecutive_failures=1, open_for=1.0, probes=1))
    b.record(False, now=0.0)
    assert b.allow(now=2.0)
    assert not b.allow(now=2.0)
    b.release()
    assert b.allow(now=2.0)


def test_the_retry_budget_is_a_fraction_of_recent_calls() -> None:
    budget = RetryBudget(BudgetPolicy(ratio=0.1, window=10, min_retries=1))
    for _ in range(50):
        budget.record_call(now=100.0)
    granted = sum(budget.try_spend(now=100.5) for _ in range(20))
    assert granted == 6  # 10 % of 50, plus the floor of 1
    assert not budget.try_spend(now=105.0)
    assert budget.try_spend(now=111.0)  # the window moved on: the floor again


def test_backoff_is_full_jitter_under_a_growing_ceiling_and_hints_win() -> None:
    policy = RetryPolicy(backoff=0.1, max_backoff=1.0)
    rng = random.Random(1)
    waits = [policy.delay(2, None, rng) for _ in range(500)]
    assert 0 <= min(waits) < 0.05 and 0.35 < max(waits) <= 0.4
    assert all(policy.delay(10, None, rng) <= 1.0 for _ in range(50))
    assert policy.delay(0, 0.7, rng) == 0.7
    assert policy.delay(0, 30.0, rng) == 1.0  # a hint is capped too
