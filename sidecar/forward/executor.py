"""The resilience executor: which upstream to ask, when to ask again, when to give up.

It owns the route's targets (primary, then fallbacks with their model names),
the breakers, the retry budget, hedging and the call's deadline, and nothing
of HTTP: one try at one upstream is the `attempt` it is given. So every
decision here can be exercised with fake attempts and a fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Protocol, TypeVar

from sidecar.bundle.snapshot import Route, UpstreamSpec
from sidecar.errors import ErrorKind, SidecarError
from sidecar.forward.failures import failure_reason, upstream_failure
from sidecar.resilience.breaker import Breaker
from sidecar.resilience.budget import RetryBudget
from sidecar.resilience.policy import DEFAULT_POLICY, RetryPolicy, UpstreamPolicy
from sidecar.resilience.state import ResilienceState
from sidecar.upstream.h1_errors import DeadlineExceeded, PoolExhausted


class Answer(Protocol):
    """An upstream's response head, as the executor sees it."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def drop(self) -> None:
        """Close it unread: it is retried or fallen back on."""

    def discard(self) -> None:
        """Close it unread: another hedged attempt answered first."""


A = TypeVar("A", bound=Answer)


@dataclass(frozen=True, slots=True)
class Target:
    """An upstream to try, the model name it knows the call by, and its policy."""

    spec: UpstreamSpec
    model: str | None
    policy: UpstreamPolicy


A_co = TypeVar("A_co", bound=Answer, covariant=True)


class Attempt(Protocol[A_co]):
    """One try at one upstream. Transport failures raise OSError or TimeoutError;
    a plain success's body is read before returning, so a connection that breaks
    mid-body fails here, where it can still be retried."""

    def __call__(self, target: Target, breaker: Breaker | None) -> Awaitable[A_co]: ...


class Events(Protocol):
    """What the executor reports to metrics."""

    def retried(self, upstream: str, reason: str) -> None: ...

    def fell_back(self, route: str, upstream: str) -> None: ...

    def hedged(self, route: str) -> None: ...

    def breaker_changed(self, breaker: Breaker) -> None: ...


class NoEvents:
    def retried(self, upstream: str, reason: str) -> None:
        pass

    def fell_back(self, route: str, upstream: str) -> None:
        pass

    def hedged(self, route: str) -> None:
        pass

    def breaker_changed(self, breaker: Breaker) -> None:
        pass


@dataclass(slots=True)
class Failure:
    """Why the upstreams could not serve the call: an error, a status, or an open breaker."""

    target: UpstreamSpec
    exc: BaseException | None = None
    status: int | None = None
    open_for: float | None = None
    hedged: bool = False
    deadline_passed: bool = False

    def error(self) -> SidecarError:
        name = self.target.name
        if self.deadline_passed or isinstance(self.exc, DeadlineExceeded):
            return SidecarError(
                ErrorKind.TIMEOUT,
                "the call's deadline passed before an upstream answered",
                code="deadline_exceeded",
            )
        if self.open_for is not None:
            return SidecarError(
                ErrorKind.UNAVAILABLE,
                f"upstream '{name}' is failing: its circuit breaker is open for another "
                f"{self.open_for:.1f}s",
                code="upstream_unavailable",
                retry_after=max(1.0, self.open_for),
            )
        if self.exc is not None:
            return upstream_failure(self.target, self.exc)
        return SidecarError(
            ErrorKind.BAD_GATEWAY,
            f"upstream '{name}' answered {self.status} and no fallback could serve the call",
            code="upstream_failed",
        )


def targets_for(
    route: Route,
    spec: UpstreamSpec,
    upstreams: Mapping[str, UpstreamSpec],
    policies: Mapping[str, UpstreamPolicy],
) -> list[Target]:
    """The route's primary upstream, then each fallback that could take a call."""
    targets = [Target(spec, route.model_rewrite, policies.get(spec.name, DEFAULT_POLICY))]
    for name, model in route.fallbacks:
        other = upstreams.get(name)
        if other is not None and not other.credential_problem:
            targets.append(Target(other, model, policies.get(name, DEFAULT_POLICY)))
    return targets


def failing(status: int, retry: RetryPolicy, route: Route) -> bool:
    """A status the upstream may be retried or fallen back on."""
    return status >= 500 or status == 429 or status in retry.statuses or status in route.fallback_on


def caller_timeout(headers: Mapping[str, str]) -> float | None:
    """The caller's own deadline: the shorter of `x-sidecar-timeout-ms` and the SDKs'
    `x-stainless-timeout`; values that are not positive numbers are ignored."""
    found: float | None = None
    for name, scale in (("x-sidecar-timeout-ms", 0.001), ("x-stainless-timeout", 1.0)):
        value = headers.get(name)
        if value:
            try:
                seconds = float(value) * scale
            except ValueError:
                continue
            if seconds > 0 and math.isfinite(seconds) and (found is None or seconds < found):
                found = seconds
    return found


def total_timeout(policy: UpstreamPolicy, route: Route, headers: Mapping[str, str]) -> float | None:
    """The whole call's time limit in seconds, if the route, upstream or caller sets one."""
    total = route.timeout if route.timeout is not None else policy.timeouts.total
    caller = caller_timeout(headers)
    if caller is not None and (total is None or caller < total):
        total = caller
    return total


def retry_hints(headers: Mapping[str, str]) -> tuple[float | None, bool]:
    """The upstream's say on retrying: how long to wait, and whether to retry at all."""
    allowed = headers.get("x-should-retry", "").strip().lower() != "false"
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if not value:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            if name != "retry-after":
                continue
            try:  # RFC 9110 also allows an HTTP date
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                continue
            if when.tzinfo is None:
                continue
            seconds = max(0.0, when.timestamp() - time.time())
        if seconds >= 0 and math.isfinite(seconds):
            return seconds, allowed
    return None, allowed


class Executor:
    """Runs one call's attempts under the route's resilience policy.

    Long-lived (one per pipeline): breakers and budgets live in the
    `ResilienceState`, so they outlast calls and bundle reloads. `clock` and
    `sleep` default to the event loop's; tests pass their own.
    """

    def __init__(
        self,
        state: ResilienceState,
        events: Events | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.state = state
        self._events = events or NoEvents()
        self._rng = rng or random.Random()
        self._clock = clock
        self._sleep = sleep or asyncio.sleep

    def now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def run(
        self,
        route: Route,
        targets: list[Target],
        attempt: Attempt[A],
        deadline: float | None,
    ) -> A | Failure:
        """Ask the targets in order until one answers.

        On each upstream: its breaker may skip it, failed attempts are retried
        (within the retry budget, never after a byte went to the caller), and a
        failure listed in the route's `fallback_on` moves to the next upstream.
        The last upstream's error answer is returned to pass through unchanged.
        Every wait shares one `deadline` (in the clock's time).
        """
        hedge = self._hedge_delay(route) if len(targets) > 1 else None
        failure: Failure | None = None
        skip = 0  # upstreams a hedge has already asked
        for index, target in enumerate(targets):
            if index < skip:
                continue
            breaker = self._breaker(target)
            ticket = breaker.allow() if breaker is not None else 0
            if ticket is None:
                assert breaker is not None
                self._events.breaker_changed(breaker)
                failure = Failure(target.spec, open_for=breaker.retry_after())
                continue
            if index > 0:
                self._events.fell_back(route.name, target.spec.name)
            if hedge is not None and index == 0:
                outcome = await self._hedged(
                    route, targets, attempt, breaker, ticket, deadline, hedge
                )
            else:
                outcome = await self._upstream(
                    route,
                    target,
                    attempt,
                    breaker,
                    ticket,
                    deadline,
                    partial(self._later_available, targets, index),
                )
            if not isinstance(outcome, Failure):
                return outcome
            failure = outcome
            if outcome.hedged:
                skip = 2  # both the first upstream and its hedge failed
        assert failure is not None
        failure.deadline_passed = deadline is not None and self.now() >= deadline
        return failure

    def _breaker(self, target: Target) -> Breaker | None:
        if target.spec.kind != "http":
            return None
        return self.state.breaker(target.spec, target.policy)

    def _later_available(self, targets: list[Target], index: int) -> bool:
        """Could an upstream after `index` take the call now? (Its breaker would let it.)"""
        for target in targets[index + 1 :]:
            breaker = self._breaker(target)
            if breaker is None or breaker.available():
                return True
        return False

    def _hedge_delay(self, route: Route) -> float | None:
        if not route.idempotent:
            return None
        if route.hedge_after is not None:
            return route.hedge_after
        if route.hedge_p95:
            return self.state.p95(route.name)
        return None

    async def _hedged(
        self,
        route: Route,
        targets: list[Target],
        attempt: Attempt[A],
        breaker: Breaker | None,
        ticket: int,
        deadline: float | None,
        delay: float,
    ) -> A | Failure:
        """Ask the second upstream too when the first is slow; the first success wins.

        An error answer waits for the other attempt: it is returned only when that one
        fails too (and then only the last upstream's, as without hedging).
        """
        first, second = targets[0], targets[1]
        primary = asyncio.ensure_future(
            self._upstream(route, first, attempt, breaker, ticket, deadline, lambda: True)
        )
        tasks: set[asyncio.Future[A | Failure]] = {primary}
        timer = asyncio.ensure_future(self._sleep(delay))
        try:
            await asyncio.wait({primary, timer}, return_when=asyncio.FIRST_COMPLETED)
            if primary.done():
                return primary.result()
            budget = self.state.budget(first.spec, first.policy) if breaker else None
            b2 = self._breaker(second)
            if budget is not None and not budget.try_spend():
                return await primary
            ticket2 = b2.allow() if b2 is not None else 0
            if ticket2 is None:
                return await primary
            self._events.hedged(route.name)
            backup = asyncio.ensure_future(
                self._upstream(
                    route,
                    second,
                    attempt,
                    b2,
                    ticket2,
                    deadline,
                    lambda: self._later_available(targets, 1),
                )
            )
            tasks.add(backup)
            pending: set[asyncio.Future[A | Failure]] = {primary, backup}
            done_set: set[asyncio.Future[A | Failure]]
            held: A | None = None  # an error answer, kept while the other runs
            failure: Failure | None = None
            while pending:
                done_set, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done_set:
                    outcome = task.result()
                    if not isinstance(outcome, Failure) and outcome.status < 400:
                        if held is not None:
                            held.discard()
                        for other in done_set - {task}:
                            late = other.result()
                            if not isinstance(late, Failure):
                                late.discard()  # a second answer in the same instant
                        return outcome
                    if not isinstance(outcome, Failure):
                        if held is None or task is backup:
                            if held is not None:
                                held.discard()
                            held = outcome
                        else:
                            outcome.discard()
                    elif failure is None or task is backup:
                        failure = outcome
            if held is not None:
                return held
            assert failure is not None
            failure.hedged = True
            return failure
        finally:
            timer.cancel()
            for task in tasks:
                if not task.done():
                    task.cancel()  # the loser, or everything if the caller went away
            for task in tasks:
                if not task.done():
                    with contextlib.suppress(BaseException):
                        await task

    async def _upstream(
        self,
        route: Route,
        target: Target,
        attempt: Attempt[A],
        breaker: Breaker | None,
        ticket: int | None,
        deadline: float | None,
        has_next: Callable[[], bool],
    ) -> A | Failure:
        """Attempts on one upstream, with retries; an answer to relay, or why it failed."""
        spec, retry = target.spec, target.policy.retry
        budget = self.state.budget(spec, target.policy) if spec.kind == "http" else None
        tries = 0
        if budget is not None:
            budget.record_call()
        while True:
            if deadline is not None and self.now() >= deadline:
                if breaker is not None:
                    breaker.release(ticket)
                return Failure(spec, exc=DeadlineExceeded("the call's deadline passed"))
            started = self.now()
            try:
                answer = await attempt(target, breaker)
            except asyncio.CancelledError:
                if breaker is not None:
                    breaker.release(ticket)
                raise
            except (OSError, TimeoutError) as exc:
                if isinstance(exc, (DeadlineExceeded, PoolExhausted)):
                    # Not the upstream failing: the call ran out of time, or this sidecar
                    # has all the connections to it that it allows in use.
                    if breaker is not None:
                        breaker.release(ticket)
                    return Failure(spec, exc=exc)
                if breaker is not None:
                    breaker.record(False, ticket=ticket)
                    self._events.breaker_changed(breaker)
                reason = failure_reason(exc)
                retryable = (
                    (reason == "connect" and retry.on_connect)
                    or (reason == "reset" and retry.on_reset)
                    or (reason == "timeout" and retry.on_timeout)
                )
                wait = self._retry_wait(retry, tries, None, budget, deadline, retryable)
                if wait is None:
                    return Failure(spec, exc=exc)
            else:
                status = answer.status
                if tries == 0 and spec.name == route.upstream:
                    self.state.record_latency(route.name, self.now() - started)
                if breaker is not None:
                    # A 429 is a busy provider, not a dead one: it does not trip the breaker.
                    breaker.record(status < 500, ticket=ticket)
                    self._events.breaker_changed(breaker)
                if not failing(status, retry, route):
                    return answer
                hint, allowed = retry_hints(answer.headers)
                retryable = status in retry.statuses and allowed
                wait = self._retry_wait(retry, tries, hint, budget, deadline, retryable)
                if wait is None:
                    if status in route.fallback_on and has_next():
                        answer.drop()
                        return Failure(spec, status=status)
                    return answer
                answer.drop()
                reason = str(status)
            # One retry path for a failed connection and a failing status alike.
            self._events.retried(spec.name, reason)
            await self._sleep(wait)
            tries += 1
            ticket = breaker.allow() if breaker is not None else 0
            if ticket is None:
                assert breaker is not None
                return Failure(spec, open_for=breaker.retry_after())

    def _retry_wait(
        self,
        retry: RetryPolicy,
        tries: int,
        hint: float | None,
        budget: RetryBudget | None,
        deadline: float | None,
        retryable: bool,
    ) -> float | None:
        """How long to back off before the next attempt, or None: no retry."""
        if not retryable or tries + 1 >= retry.attempts:
            return None
        if hint is not None and hint > retry.max_backoff:
            return None  # the provider asks for longer than this upstream's retries wait
        wait = retry.delay(tries, hint, self._rng)
        if deadline is not None and self.now() + wait >= deadline:
            return None  # the wait alone would outlast the deadline
        if budget is not None and not budget.try_spend():
            return None
        return wait
