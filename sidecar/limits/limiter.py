"""The limit stage: which rules a call meets, one check per store, settlement after.

Before the call: every matching rule contributes cells (requests, tokens,
cost, concurrency), reserved from what is known — one request, the prompt's
token estimate plus the output cap, their price. Memory cells are checked
first (no await: exact under any concurrency), then Redis cells in one
script; if Redis refuses, the memory reservation is rolled back, so a refused
call costs nothing anywhere. After the call, `settle` charges the difference
between what was reserved and what the provider reported, and releases
concurrency leases.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sidecar.call import Call, Usage
from sidecar.errors import ErrorKind, SidecarError
from sidecar.identity.principal import Principal
from sidecar.limits.cells import CONCURRENT, RATE, WINDOW, Cell, Checked, Outcome
from sidecar.limits.memory import MemoryStore
from sidecar.limits.redis_store import RedisStore, StoreUnavailable
from sidecar.limits.rules import LimitRule, LimitSet, Price, Quota, RedisSettings

log = logging.getLogger("sidecar.limits")


@dataclass(slots=True)
class Entry(Cell):
    """One cell and what it stands for (the stores read only the Cell part)."""

    rule: LimitRule = field(default=None)  # type: ignore[assignment]
    dim: str = ""  # "requests" | "tokens" | "cost" | "concurrent"
    quota: Quota | None = None
    key_text: str = ""  # the rule's key values, for messages and metrics
    outcome: Outcome | None = None


@dataclass(slots=True)
class Admission:
    """What an admitted call holds until it is settled."""

    member: str
    memory: list[Entry] = field(default_factory=list)
    local: list[Entry] = field(default_factory=list)  # Redis rules kept locally (Redis down)
    redis: list[Entry] = field(default_factory=list)
    redis_store: RedisStore | None = None
    input_estimate: int = 0
    price: Price | None = None
    spends: bool = False
    produced_chars: int = 0  # streamed text seen, for settling a stream cut short
    store_error: str | None = None
    rules: tuple[str, ...] = ()

    def entries(self) -> list[Entry]:
        return [*self.memory, *self.local, *self.redis]


class LimitRefused(SidecarError):
    """A rule refused the call; `entries` are the checked cells, for the headers."""

    def __init__(self, err: SidecarError, rule: str, entries: list[Entry]) -> None:
        super().__init__(
            err.kind,
            err.message,
            code=err.code,
            retry_after=err.retry_after,
            retryable=err.retryable,
        )
        self.rule = rule
        self.entries = entries
        self.store_error: str | None = None  # set when counted locally because Redis was away


class LimitStores:
    """Process-wide state: survives bundle reloads, so a reload resets no one's budget."""

    def __init__(self, on_pending: Callable[[int], None] | None = None) -> None:
        self.memory = MemoryStore()
        self.local = MemoryStore()  # stand-in for Redis rules while Redis is down
        self._redis: dict[tuple[str, float, bool], RedisStore] = {}
        self._settling: set[asyncio.Task[None]] = set()
        self._on_pending = on_pending  # how many settlements are in flight, when it changes

    def redis_for(self, settings: RedisSettings) -> RedisStore | None:
        if settings.url is None:
            return None
        key = (settings.url, settings.timeout, settings.cluster)
        store = self._redis.get(key)
        if store is None:
            try:
                store = RedisStore(settings.url, settings.timeout, cluster=settings.cluster)
            except (ValueError, TypeError) as exc:
                log.error("cannot use the Redis URL", extra={"error": str(exc)})
                return None
            self._redis[key] = store
        return store

    def redis_stores(self) -> list[RedisStore]:
        return list(self._redis.values())

    def state(self) -> dict[str, float]:
        """Every memory counter by key (rate cells: a time; budgets: the amount used)."""
        return {**self.memory.state(), **self.local.state()}

    def spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._settling.add(task)
        task.add_done_callback(self._settled)
        if self._on_pending is not None:
            self._on_pending(len(self._settling))

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._settling.discard(task)
        if self._on_pending is not None:
            self._on_pending(len(self._settling))

    async def close(self) -> None:
        if self._settling:
            # Settlements finish; a compensation still waiting for Redis is given up.
            _, pending = await asyncio.wait(set(self._settling), timeout=1.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for store in self._redis.values():
            await store.close()
        self._redis.clear()


OnDecision = Callable[[str, str], None]  # (rule id, "admitted" | "rejected")
OnStoreError = Callable[[str], None]  # (store)
OnRemaining = Callable[[str, str, str, float], None]  # (rule, key, unit, remaining)


class Limiter:
    def __init__(
        self,
        stores: LimitStores,
        on_decision: OnDecision,
        on_store_error: OnStoreError,
        on_remaining: OnRemaining,
    ) -> None:
        self.stores = stores
        self._on_decision = on_decision
        self._on_store_error = on_store_error
        self._on_remaining = on_remaining

    async def admit(
        self, limits: LimitSet, call: Call, principal: Principal, route: str, member: str
    ) -> Admission | None:
        resource = call.resource
        values = {
            "tenant": principal.tenant,
            "user": principal.user or "",
            "agent": principal.agent,
            "model": resource.id if resource.type == "Model" else "",
            "route": route,
            "tool": resource.id if resource.type == "Tool" else "",
        }
        roles = principal.roles
        rules = [r for r in limits.rules if r.matches(values, roles)]
        if not rules:
            return None
        adm = Admission(member, rules=tuple([r.id for r in rules]))
        priced = False
        # Counting tokens is free at the provider; a tool call spends no model tokens.
        free = call.operation == "count_tokens" or resource.type != "Model"
        for r in rules:
            if r.spends and not free:
                adm.spends = True
                priced = priced or r.cost is not None
        if adm.spends:
            adm.input_estimate = call.token_estimate
        if priced:
            adm.price = limits.price(values["model"])
            if adm.price is None:
                rule = next(r for r in rules if r.cost is not None)
                raise SidecarError(
                    ErrorKind.FORBIDDEN,
                    f"limit '{rule.id}' is a cost budget, but the bundle's pricing has no "
                    f"price for model '{values['model']}'; add it to pricing",
                    code="price_unknown",
                    retryable=False,
                )
        wall = time.time()
        redis_rules: list[Entry] = []
        for rule in rules:
            entries = _entries(limits, rule, values, call, adm, wall)
            if rule.store == "redis":
                redis_rules += entries
            else:
                adm.memory += entries
        if adm.memory:
            checked = self.stores.memory.check(adm.memory)
            self._take(adm.memory, checked)
            if not checked.admitted:
                raise self._refused(adm.memory, checked)
        if redis_rules:
            try:
                await self._admit_redis(limits, redis_rules, adm)
            except BaseException:
                self._rollback(adm.memory, self.stores.memory)
                raise
        for rule_id in adm.rules:
            self._on_decision(rule_id, "admitted")
        if adm.spends:
            for entry in adm.entries():
                if entry.dim in _BUDGETS and entry.outcome is not None:
                    self._on_remaining(
                        entry.rule.id, entry.key_text, entry.dim, entry.outcome.remaining
                    )
        return adm

    async def _admit_redis(self, limits: LimitSet, entries: list[Entry], adm: Admission) -> None:
        store = self.stores.redis_for(limits.redis) if limits.redis else None
        problem = (
            limits.redis.problem
            if limits.redis and limits.redis.problem
            else "no Redis is configured"
        )
        checked: Checked | None = None
        if store is not None:
            try:
                checked = await store.check(entries, adm.member)
            except StoreUnavailable as exc:
                problem = str(exc)
                if exc.maybe_ran:
                    store.compensate(entries, adm.member)
        if checked is not None:
            adm.redis, adm.redis_store = entries, store
            self._take(entries, checked)
            if not checked.admitted:
                raise self._refused(entries, checked)
            return
        # Redis is unreachable: each rule as its bundle says.
        self._on_store_error("redis")
        adm.store_error = problem
        closed = [e for e in entries if e.rule.on_store_error == "closed"]
        if closed:
            raise SidecarError(
                ErrorKind.UNAVAILABLE,
                f"limit '{closed[0].rule.id}' cannot be checked: {problem}; "
                "the bundle says to refuse calls then (on_store_error: closed)",
                code="limit_store_unavailable",
                retry_after=1,
            )
        local = [e for e in entries if e.rule.on_store_error == "local"]
        if local:
            checked = self.stores.local.check(local)
            self._take(local, checked)
            if not checked.admitted:
                refused = self._refused(local, checked)
                refused.store_error = problem
                raise refused
            adm.local = local

    def _take(self, entries: list[Entry], checked: Checked) -> None:
        for entry, outcome in zip(entries, checked.outcomes, strict=True):
            entry.outcome = outcome

    def _rollback(self, entries: list[Entry], store: MemoryStore) -> None:
        if entries:
            store.settle(entries, [-e.cost for e in entries])

    def _refused(self, entries: list[Entry], checked: Checked) -> LimitRefused:
        refusing = [
            e for e in entries if e.outcome is not None and e.outcome.retry_after > 0
        ] or entries
        for rule_id in dict.fromkeys(e.rule.id for e in refusing):
            self._on_decision(rule_id, "rejected")
        worst = max(refusing, key=lambda e: e.outcome.retry_after if e.outcome else 0.0)
        wait = worst.outcome.retry_after if worst.outcome else 1.0
        rule, quota = worst.rule, worst.quota
        who = f" for {worst.key_text}" if worst.key_text else ""
        if worst.dim == "concurrent":
            what = f"at most {rule.concurrent} calls at once"
        elif quota is not None:
            what = quota.describe(_UNITS[worst.dim])
        else:
            what = "no more calls now"
        if math.isinf(wait):
            need = f"{worst.cost:g} {_UNITS[worst.dim]}"
            err = SidecarError(
                ErrorKind.RATE_LIMITED,
                f"limit '{rule.id}' allows {what}{who}; this call alone needs {need}, "
                "so it can never pass (lower max_tokens or the prompt)",
                code="rate_limit_exceeded",
                retryable=False,
            )
            return LimitRefused(err, rule.id, entries)
        err = SidecarError(
            ErrorKind.RATE_LIMITED,
            f"limit '{rule.id}' allows {what}{who}; retry in {wait:.2f}s",
            code="rate_limit_exceeded",
            retry_after=wait,
            retryable=True,
        )
        return LimitRefused(err, rule.id, entries)

    # --- after the call ------------------------------------------------------------------

    def settle(self, adm: Admission, usage: Usage, status: int) -> None:
        spent_in, spent_out = _spent(adm, usage, status)
        for entries, store in ((adm.memory, self.stores.memory), (adm.local, self.stores.local)):
            if entries:
                store.settle(
                    entries,
                    [_delta(e, adm, spent_in, spent_out) for e in entries],
                )
        if adm.redis and adm.redis_store is not None:
            deltas = [_delta(e, adm, spent_in, spent_out) for e in adm.redis]
            # Request counts stay as charged; with no lease to release and nothing to
            # refund or charge, there is no second round trip at all.
            if any(deltas) or any(e.kind == CONCURRENT for e in adm.redis):
                self.stores.spawn(
                    self._settle_redis(adm.redis_store, adm.redis, deltas, adm.member)
                )

    async def _settle_redis(
        self, store: RedisStore, entries: list[Entry], deltas: list[float], member: str
    ) -> None:
        try:
            await store.settle(entries, deltas, member)
        except StoreUnavailable as exc:
            # Applied once Redis answers again, rather than lost.
            self._on_store_error("redis")
            log.warning("limit settlement deferred", extra={"error": str(exc)})
            store.settle_later(entries, deltas, member)


_BUDGETS = ("tokens", "cost")
_NO_OUTPUT = frozenset({"embeddings", "count_tokens"})  # operations that generate nothing
_UNITS = {"requests": "requests", "tokens": "tokens", "cost": "dollars", "concurrent": "calls"}


_MAX_KEYS = 50_000  # memoized rule keys per snapshot


def _keys(limits: LimitSet, rule: LimitRule, values: dict[str, str]) -> tuple[str, dict[str, str]]:
    dims = tuple([values[d] for d in rule.key])
    memo = limits.keys
    cached = memo.get((rule.id, dims))
    if cached is not None:
        return cached
    prefix = limits.redis.prefix if limits.redis else ""
    keyval = ",".join(f"{d}={_clean(v)}" for d, v in zip(rule.key, dims, strict=True))
    # On Redis, the hash tag keeps a rule key's cells in one Redis Cluster slot.
    redis = rule.store == "redis"
    base = f"{prefix}{{{rule.id}|{keyval}}}" if redis else f"{rule.id}|{keyval}"
    keys = {"concurrent": f"{base}|con|c"}
    for dim, tag, q in (
        ("requests", "req", rule.requests),
        ("tokens", "tok", rule.tokens),
        ("cost", "usd", rule.cost),
    ):
        if q is not None:
            # A window's key gets its end appended; a rate cell's state is a time whose
            # meaning depends on limit and period, so a rule whose numbers change starts
            # a new counter rather than misreading the old one.
            keys[dim] = (
                f"{base}|{tag}|" if q.calendar else f"{base}|{tag}:{q.limit:g}/{q.period:g}|g"
            )
    if len(memo) >= _MAX_KEYS:
        memo.clear()
    memo[(rule.id, dims)] = (keyval, keys)
    return keyval, keys


def _entries(
    limits: LimitSet,
    rule: LimitRule,
    values: dict[str, str],
    call: Call,
    adm: Admission,
    wall: float,
) -> list[Entry]:
    keyval, keys = _keys(limits, rule, values)
    out: list[Entry] = []
    q = rule.requests
    if q is not None:
        out.append(
            Entry(keys["requests"], RATE, q.limit, q.period, 1.0, rule, "requests", q, keyval)
        )
    if rule.spends and adm.spends:
        if call.operation in _NO_OUTPUT:
            output_reserve = 0
        else:
            output_reserve = max(0, call.max_output_tokens or rule.reserve_output_tokens)
        q = rule.tokens
        if q is not None:
            count = rule.token_count
            n = (adm.input_estimate if count != "output" else 0) + (
                output_reserve if count != "input" else 0
            )
            out.append(_budget(keys["tokens"], rule, "tokens", q, float(n), keyval, wall))
        q = rule.cost
        if q is not None and adm.price is not None:
            n_cost = adm.input_estimate * adm.price.input + output_reserve * adm.price.output
            out.append(_budget(keys["cost"], rule, "cost", q, n_cost, keyval, wall))
    if rule.concurrent is not None:
        out.append(
            Entry(
                keys["concurrent"],
                CONCURRENT,
                float(rule.concurrent),
                0.0,
                1.0,
                rule,
                "concurrent",
                None,
                keyval,
            )
        )
    return out


def _budget(
    key: str, rule: LimitRule, dim: str, q: Quota, cost: float, keyval: str, wall: float
) -> Entry:
    if q.calendar is None:
        return Entry(key, RATE, q.limit, q.period, cost, rule, dim, q, keyval)
    end = _current_end(q.calendar, wall)
    return Entry(f"{key}{end}|w", WINDOW, q.limit, float(end), cost, rule, dim, q, keyval)


_ENDS: dict[str, int] = {}  # calendar unit -> the current window's end


def _current_end(calendar_unit: str, wall: float) -> int:
    end = _ENDS.get(calendar_unit)
    if end is None or wall >= end or wall < end - 32 * 86400:
        end = _ENDS[calendar_unit] = _window_end(calendar_unit, wall)
    return end


def _window_end(calendar_unit: str, wall: float) -> int:
    if calendar_unit == "day":
        return (int(wall) // 86400 + 1) * 86400
    t = time.gmtime(wall)
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0, 0, 0, 0))


def _spent(adm: Admission, usage: Usage, status: int) -> tuple[int, int]:
    """Input and output tokens the call really used, as well as can be known."""
    produced = (adm.produced_chars + 3) // 4
    if usage.input_tokens is not None or usage.output_tokens is not None:
        out = usage.output_tokens if usage.output_tokens is not None else produced
        if not usage.finish_reasons:
            # No end was reported (a stream cut short): an early count such as Anthropic's
            # message_start output_tokens: 1 is not the whole of what was produced.
            out = max(out, produced)
        inp = usage.input_tokens if usage.input_tokens is not None else adm.input_estimate
        return inp, out
    if status >= 400 and not adm.produced_chars:
        return 0, 0  # refused or failed before producing anything: providers do not bill
    # A stream cut short before its usage event: what was produced, and the prompt.
    return adm.input_estimate, produced


def _delta(entry: Entry, adm: Admission, spent_in: int, spent_out: int) -> float:
    dim, rule = entry.dim, entry.rule
    if dim == "tokens":
        count = rule.token_count
        actual = (spent_in if count != "output" else 0) + (spent_out if count != "input" else 0)
        return actual - entry.cost
    if dim == "cost" and adm.price is not None:
        return spent_in * adm.price.input + spent_out * adm.price.output - entry.cost
    return 0.0  # requests stay counted; concurrency leases are released by kind


def _clean(value: str) -> str:
    # Braces would move a Redis hash tag; separators would let two keys collide.
    return (
        value.replace("%", "%25")
        .replace("{", "%7B")
        .replace("}", "%7D")
        .replace(",", "%2C")
        .replace("|", "%7C")
        .replace("=", "%3D")
    )
