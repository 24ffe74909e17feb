"""The arithmetic of limits: GCRA, calendar budgets, concurrency, settlement, headers."""

from __future__ import annotations

import math

import pytest

from sidecar.limits.cells import CONCURRENT, RATE, WINDOW, Cell
from sidecar.limits.headers import duration
from sidecar.limits.limiter import _window_end
from sidecar.limits.memory import MemoryStore
from sidecar.limits.rules import parse_period


def rate(key: str = "k|req|g", limit: float = 10, period: float = 60, cost: float = 1) -> Cell:
    return Cell(key, RATE, limit, period, cost)


def test_gcra_admits_a_full_burst_then_one_per_interval() -> None:
    store = MemoryStore()
    now = 1000.0
    admitted = [store.check([rate()], now).admitted for _ in range(15)]
    assert admitted == [True] * 10 + [False] * 5
    refused = store.check([rate()], now)
    assert refused.outcomes[0].retry_after == pytest.approx(6.0)  # 60 s / 10
    assert store.check([rate()], now + 5.9).admitted is False
    assert store.check([rate()], now + 6.0).admitted is True
    assert store.check([rate()], now + 6.0).admitted is False


def test_gcra_has_no_double_burst_at_any_edge() -> None:
    """However calls are timed, no 60 s span admits more than limit + rate x span."""
    store = MemoryStore()
    times = [1000.0 + i * 0.5 for i in range(400)]
    admitted = [t for t in times if store.check([rate()], t).admitted]
    for start in admitted:
        inside = [t for t in admitted if start <= t < start + 60]
        assert len(inside) <= 10 + 10  # the burst, plus one period of steady refill


def test_a_refused_check_charges_no_cell() -> None:
    store = MemoryStore()
    a, b = rate("a|req|g", limit=5), rate("b|req|g", limit=1)
    assert store.check([a, b], 0.0).admitted
    assert not store.check([a, b], 0.0).admitted  # b refuses ...
    assert store.check([a], 0.0).outcomes[0].remaining == 3  # ... so a was not charged


def test_settlement_refunds_and_charges_the_difference() -> None:
    store = MemoryStore()
    tokens = rate("t|tok|g", limit=1000, period=60, cost=300)
    assert store.check([tokens], 0.0).outcomes[0].remaining == 700
    store.settle([tokens], [-200.0], 0.0)  # used 100 of the 300 reserved
    probe = rate("t|tok|g", limit=1000, period=60, cost=0)
    assert store.check([probe], 0.0).outcomes[0].remaining == 900
    store.settle([tokens], [+500.0], 0.0)  # a call that used more than it reserved
    assert store.check([probe], 0.0).outcomes[0].remaining == 400


def test_a_call_bigger_than_the_limit_can_never_pass() -> None:
    store = MemoryStore()
    checked = store.check([rate(limit=100, cost=101)], 0.0)
    assert not checked.admitted and math.isinf(checked.outcomes[0].retry_after)


def test_calendar_budget_resets_with_its_window() -> None:
    store = MemoryStore()
    end = 86400.0
    cell = Cell("c|usd|86400|w", WINDOW, 1.0, end, 0.4)
    assert [store.check([cell], 100.0).admitted for _ in range(3)] == [True, True, False]
    refused = store.check([cell], 100.0)
    assert refused.outcomes[0].retry_after == pytest.approx(end - 100.0)
    tomorrow = Cell("c|usd|172800|w", WINDOW, 1.0, 172800.0, 0.4)
    assert store.check([tomorrow], end + 1).admitted


def test_concurrency_leases() -> None:
    store = MemoryStore()
    cell = Cell("x|con|c", CONCURRENT, 2, 0.0, 1.0)
    assert store.check([cell], 0.0).admitted and store.check([cell], 0.0).admitted
    assert not store.check([cell], 0.0).admitted
    store.settle([cell], [0.0], 0.0)
    assert store.check([cell], 0.0).admitted


def test_idle_keys_are_swept_and_the_store_is_bounded() -> None:
    store = MemoryStore(max_keys=100)
    for i in range(500):
        store.check([rate(f"k{i}|req|g")], float(i))
    assert len(store) <= 101
    fresh = MemoryStore(max_keys=100)
    for i in range(500):
        fresh.check([rate(f"k{i}|req|g", period=1e9)], 0.0)  # none idle: LRU eviction
    assert len(fresh) <= 101 and fresh.evicted >= 399


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", (30.0, None)),
        ("1m", (60.0, None)),
        ("1h", (3600.0, None)),
        ("24h", (86400.0, None)),
        ("500ms", (0.5, None)),
        ("minute", (60.0, None)),
        ("day", (0.0, "day")),
        ("month", (0.0, "month")),
        ("0s", None),
        ("fortnight", None),
        (5, None),
    ],
)
def test_periods(text: object, expected: object) -> None:
    assert parse_period(text) == expected


def test_window_ends() -> None:
    assert _window_end("day", 86400 * 3 + 5) == 86400 * 4
    # 2026-12-15 -> 2027-01-01 00:00 UTC
    assert _window_end("month", 1797292800.0) == 1798761600


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.02, "20ms"), (1.5, "1.5s"), (6.0, "6s"), (360.0, "6m0s"), (3723.25, "1h2m3.25s")],
)
def test_openai_durations(seconds: float, text: str) -> None:
    assert duration(seconds) == text
