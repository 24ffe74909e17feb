"""The resilience executor's decisions, with scripted attempts and a clock it does not share.

No sockets: each upstream is a script of outcomes (a status, or an exception to
raise), time is a counter that the executor's sleeps advance, and the metrics
are a list of events.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from sidecar.bundle.snapshot import Route, UpstreamSpec
from sidecar.forward.executor import Executor, Failure, Target
from sidecar.resilience.breaker import OPEN, Breaker, BreakerPolicy
from sidecar.resilience.budget import BudgetPolicy
from sidecar.resilience.policy import RetryPolicy, Timeouts, UpstreamPolicy
from sidecar.resilience.state import ResilienceState
from sidecar.upstream.h1 import ConnectError


@dataclass
class FakeAnswer:
    upstream: str
    model: str | None
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    closed: str = ""

    def drop(self) -> None:
        self.closed = "dropped"

    def discard(self) -> None:
        self.closed = "discarded"


Step = int | BaseException | asyncio.Event


class Upstreams:
    """Scripted upstreams: each call takes the next step of that upstream's script."""

    def __init__(self, headers: Mapping[str, str] | None = None, **scripts: list[Step]) -> None:
        self.headers = headers or {}
        self.scripts = {name: list(steps) for name, steps in scripts.items()}
        self.calls: list[tuple[str, str | None]] = []
        self.answers: list[FakeAnswer] = []

    async def __call__(self, target: Target, breaker: Breaker | None) -> FakeAnswer:
        name = target.spec.name
        self.calls.append((name, target.model))
        step = self.scripts[name].pop(0)
        if isinstance(step, asyncio.Event):
            await step.wait()
            step = self.scripts[name].pop(0)
        if isinstance(step, BaseException):
            raise step
        assert isinstance(step, int)
        answer = FakeAnswer(name, target.model, step, self.headers)
        self.answers.append(answer)
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, ...]] = []

    def retried(self, upstream: str, reason: str) -> None:
        self.seen.append(("retry", upstream, reason))

    def fell_back(self, route: str, upstream: str) -> None:
        self.seen.append(("fallback", route, upstream))

    def hedged(self, route: str) -> None:
        self.seen.append(("hedge", route))

    def breaker_changed(self, breaker: Breaker) -> None:
        self.seen.append(("breaker", breaker.name, breaker.state))


def spec(name: str) -> UpstreamSpec:
    return UpstreamSpec(name, "http", None, origin=f"http://{name}:80", host=name, port=80)


def target(name: str, model: str | None = None, trip_after: int = 2, **retry: object) -> Target:
    policy = UpstreamPolicy(
        timeouts=Timeouts(),
        retry=RetryPolicy(**retry),  # type: ignore[arg-type]
        breaker=BreakerPolicy(consecutive_failures=trip_after, open_for=30.0),
    )
    return Target(spec(name), model, policy)


def route(**kw: object) -> Route:
    return Route("r", "a", None, None, **kw)  # type: ignore[arg-type]


def executor(clock: Clock, events: Events, state: ResilienceState | None = None) -> Executor:
    return Executor(
        state or ResilienceState(), events, random.Random(7), clock=clock, sleep=clock.sleep
    )


async def test_a_failing_status_is_retried_after_a_back_off_then_answers() -> None:
    clock, events = Clock(), Events()
    ups = Upstreams(a=[503, 200])
    out = await executor(clock, events).run(
        route(), [target("a", statuses=frozenset({503}))], ups, None
    )
    assert isinstance(out, FakeAnswer) and out.status == 200
    assert ups.calls == [("a", None), ("a", None)]
    assert ups.answers[0].closed == "dropped"  # the retried answer is closed unread
    assert ("retry", "a", "503") in events.seen
    assert len(clock.slept) == 1 and 0.0 <= clock.slept[0] <= 0.25


async def test_a_refused_connection_takes_the_same_retry_path() -> None:
    clock, events = Clock(), Events()
    ups = Upstreams(a=[ConnectError("refused"), 200])
    out = await executor(clock, events).run(route(), [target("a")], ups, None)
    assert isinstance(out, FakeAnswer) and out.status == 200
    assert ("retry", "a", "connect") in events.seen and len(clock.slept) == 1


async def test_attempts_are_capped_and_the_last_error_answer_passes_through() -> None:
    clock, events = Clock(), Events()
    ups = Upstreams(a=[503, 503, 503, 200])
    t = target("a", trip_after=10, statuses=frozenset({503}), attempts=3)
    out = await executor(clock, events).run(route(), [t], ups, None)
    assert isinstance(out, FakeAnswer) and out.status == 503 and out.closed == ""
    assert len(ups.calls) == 3


async def test_a_provider_hint_longer_than_the_back_off_cap_is_not_waited_for() -> None:
    clock, events = Clock(), Events()
    ups = Upstreams({"retry-after": "5"}, a=[429, 200])
    t = target("a", statuses=frozenset({429}), max_backoff=1.0)
    out = await executor(clock, events).run(route(), [t], ups, None)
    assert isinstance(out, FakeAnswer) and out.status == 429
    assert clock.slept == [] and len(ups.calls) == 1


async def test_the_retry_budget_stops_retries_once_spent() -> None:
    clock, events, state = Clock(), Events(), ResilienceState()
    budget = BudgetPolicy(ratio=0.0, min_retries=1)
    t = target("a", statuses=frozenset({503}), budget=budget)
    ex = executor(clock, events, state)
    first = await ex.run(route(), [t], Upstreams(a=[503, 200]), None)
    assert isinstance(first, FakeAnswer) and first.status == 200  # the one retry allowed
    ups = Upstreams(a=[503, 200])
    second = await ex.run(route(), [t], ups, None)
    assert isinstance(second, FakeAnswer) and second.status == 503  # budget spent
    assert len(ups.calls) == 1


async def test_failures_open_the_breaker_and_an_open_breaker_skips_the_upstream() -> None:
    clock, events, state = Clock(), Events(), ResilienceState()
    ex = executor(clock, events, state)
    t = target("a", attempts=1)
    for _ in range(2):
        out = await ex.run(route(), [t], Upstreams(a=[ConnectError("refused")]), None)
        assert isinstance(out, Failure)
    assert ("breaker", "a", OPEN) in events.seen
    ups = Upstreams(a=[200])
    out = await ex.run(route(), [t], ups, None)
    assert isinstance(out, Failure) and ups.calls == []  # not even tried
    err = out.error()
    assert err.code == "upstream_unavailable" and err.retry_after is not None


async def test_a_429_does_not_trip_the_breaker() -> None:
    clock, events, state = Clock(), Events(), ResilienceState()
    ex = executor(clock, events, state)
    t = target("a", attempts=1)
    for _ in range(3):
        await ex.run(route(fallback_on=frozenset()), [t], Upstreams(a=[429]), None)
    assert state.breakers() == {"a": "closed"}


async def test_a_fallback_gets_its_own_model_name_when_the_primary_fails() -> None:
    clock, events = Clock(), Events()
    ups = Upstreams(a=[503], b=[200])
    targets = [target("a", "gpt-a", attempts=1), target("b", "deploy-b", attempts=1)]
    out = await executor(clock, events).run(route(), targets, ups, None)
    assert isinstance(out, FakeAnswer) and out.upstream == "b" and out.status == 200
    assert ups.calls == [("a", "gpt-a"), ("b", "deploy-b")]
    assert ups.answers[0].closed == "dropped"
    assert ("fallback", "r", "b") in events.seen


async def test_the_last_upstream_error_passes_through_when_every_fallback_fails() -> None:
    clock, events = Clock(), Events()
    ups = Upstreams(a=[503], b=[502])
    targets = [target("a", attempts=1), target("b", attempts=1)]
    out = await executor(clock, events).run(route(), targets, ups, None)
    assert isinstance(out, FakeAnswer) and out.upstream == "b" and out.status == 502


async def test_a_slow_primary_is_hedged_and_the_faster_answer_wins() -> None:
    clock, events = Clock(), Events()
    slow = asyncio.Event()  # never set: the primary hangs
    ups = Upstreams(a=[slow, 200], b=[200])
    targets = [target("a", attempts=1), target("b", attempts=1)]
    out = await executor(clock, events).run(
        route(idempotent=True, hedge_after=0.5), targets, ups, None
    )
    assert isinstance(out, FakeAnswer) and out.upstream == "b"
    assert ("hedge", "r") in events.seen and clock.slept == [0.5]
    assert ups.calls == [("a", None), ("b", None)]


async def test_a_fast_primary_is_not_hedged() -> None:
    clock, events = Clock(), Events()
    ups = Upstreams(a=[200], b=[200])
    targets = [target("a", attempts=1), target("b", attempts=1)]
    out = await executor(clock, events).run(
        route(idempotent=True, hedge_after=0.5), targets, ups, None
    )
    assert isinstance(out, FakeAnswer) and out.upstream == "a"
    assert ups.calls == [("a", None)] and ("hedge", "r") not in events.seen


async def test_a_retry_whose_wait_outlasts_the_deadline_is_not_made() -> None:
    clock, events = Clock(), Events()
    ups = Upstreams(a=[503, 200])
    t = target("a", statuses=frozenset({503}), backoff=10.0, max_backoff=10.0)
    ex = Executor(ResilienceState(), events, _Fixed(), clock=clock, sleep=clock.sleep)
    out = await ex.run(route(), [t], ups, clock.now + 1.0)
    assert isinstance(out, FakeAnswer) and out.status == 503 and clock.slept == []


async def test_a_passed_deadline_fails_the_call_without_an_attempt() -> None:
    clock, events = Clock(), Events()
    ups = Upstreams(a=[200])
    out = await executor(clock, events).run(route(), [target("a")], ups, clock.now - 1.0)
    assert isinstance(out, Failure) and ups.calls == []
    assert out.error().code == "deadline_exceeded"


class _Fixed(random.Random):
    """Jitter at its ceiling, so a back-off's length is known."""

    def uniform(self, a: float, b: float) -> float:
        return b
