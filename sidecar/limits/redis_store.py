"""Limit state shared by replicas: one Lua script per check, run atomically by Redis.

The script does for all of a call's cells what `MemoryStore.check` does,
with Redis's own clock (`TIME`), so replicas with skewed clocks still agree.
Every key expires once its state equals a fresh key's. Keys carry a hash tag
(the rule and key values), so each rule's cells live in one Redis Cluster slot.

Failure is bounded: every command runs under the bundle's timeout; after a
failure the store is not asked again for `RETRY_AFTER_S` (calls meanwhile get
the rule's `on_store_error` at once instead of each waiting out a timeout),
then the next call probes it, so limits come back by themselves with Redis.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

from sidecar.limits.cells import Cell, Checked, Outcome

log = logging.getLogger("sidecar.limits")

RETRY_AFTER_S = 1.0
MAX_CONNECTIONS = 32
COMPENSATE_POLL_S = 0.25
MAX_PENDING = 10_000  # settlements kept while Redis is away
LEASE_S = 900.0  # a concurrency lease outlives any sane call; a crashed replica's expire
# How long a check that charged leaves its marker: a compensation runs within a moment
# of Redis answering again, so this only needs to outlast that (a marker gone by then
# loses a refund, the safe side); short, so markers cost little memory in Redis.
MARK_S = 60.0

# KEYS: one per cell, then the check's marker. ARGV: member, lease seconds, marker
# seconds, then per cell: kind, limit, period, cost.
CHECK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local member, lease, mark = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local n = #KEYS - 1
local out, news, ok = {}, {}, 1
for i = 1, n do
  local b = 3 + (i - 1) * 4
  local kind, limit = ARGV[b + 1], tonumber(ARGV[b + 2])
  local period, cost = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local remaining, reset, retry = 0, 0, 0
  if kind == 'g' then
    local interval = period / limit
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    local base = math.max(tat, now)
    local new = base + cost * interval
    if new - now > period + 1e-9 then
      ok = 0
      if cost > limit then retry = -1 else retry = new - now - period end
      remaining = math.max(0, math.floor((period - (base - now)) / interval + 1e-9))
      reset = base - now
    else
      news[i] = new
      remaining = math.max(0, math.floor((period - (new - now)) / interval + 1e-9))
      reset = new - now
    end
  elseif kind == 'w' then
    local used = tonumber(redis.call('GET', KEYS[i]) or '0')
    local new = used + cost
    reset = math.max(0, period - now)
    if new > limit + 1e-9 then
      ok = 0
      if cost > limit then retry = -1 else retry = reset end
      remaining = math.max(0, limit - used)
    else
      news[i] = new
      remaining = math.max(0, limit - new)
    end
  else
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    local count = redis.call('ZCARD', KEYS[i])
    if count + 1 > limit then
      ok = 0; retry = 1; reset = 1
    else
      news[i] = 1
      remaining = limit - count - 1
    end
  end
  out[#out + 1] = string.format('%.17g', remaining)
  out[#out + 1] = string.format('%.6f', reset)
  out[#out + 1] = string.format('%.6f', retry)
end
if ok == 1 then
  redis.call('SET', KEYS[#KEYS], '1', 'PX', math.ceil(mark * 1000))
  for i = 1, n do
    local b = 3 + (i - 1) * 4
    local kind, period = ARGV[b + 1], tonumber(ARGV[b + 3])
    if kind == 'g' then
      local ttl = math.ceil((news[i] - now) * 1000) + 1000
      redis.call('SET', KEYS[i], string.format('%.17g', news[i]), 'PX', ttl)
    elseif kind == 'w' then
      local ttl = math.ceil(math.max(period - now, 0)) + 60
      redis.call('SET', KEYS[i], string.format('%.17g', news[i]), 'EX', ttl)
    else
      redis.call('ZADD', KEYS[i], now + lease, member)
      redis.call('PEXPIRE', KEYS[i], math.ceil(lease * 1000))
    end
  end
end
table.insert(out, 1, tostring(ok))
return out
"""

# KEYS: one per cell, then the check's marker (consumed: the call is settled). ARGV:
# member, whether the deltas are a refund of the check (only applied if the marker says
# the check charged, and so only once), then per cell: kind, limit, period, delta.
SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local member, undo = ARGV[1], ARGV[2] == '1'
local n = #KEYS - 1
local charged = redis.call('DEL', KEYS[#KEYS]) == 1 or not undo
for i = 1, n do
  local b = 2 + (i - 1) * 4
  local kind, limit = ARGV[b + 1], tonumber(ARGV[b + 2])
  local period, delta = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  if not charged then delta = 0 end
  if kind == 'c' then
    redis.call('ZREM', KEYS[i], member)
  elseif delta ~= 0 and kind == 'g' then
    local interval = period / limit
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    local new
    if delta >= 0 then new = math.max(tat, now) + delta * interval
    else new = math.max(tat + delta * interval, now) end
    local ttl = math.ceil((new - now) * 1000) + 1000
    redis.call('SET', KEYS[i], string.format('%.17g', new), 'PX', ttl)
  elseif delta ~= 0 and kind == 'w' and period > now then
    local used = tonumber(redis.call('GET', KEYS[i]) or '0')
    local ttl = math.ceil(period - now) + 60
    redis.call('SET', KEYS[i], string.format('%.17g', math.max(0, used + delta)), 'EX', ttl)
  end
end
if charged then return 1 end
return 0
"""


class StoreUnavailable(Exception):
    """Redis did not answer within the timeout, or refused; the message says which.

    `maybe_ran`: the command may have reached Redis (a timeout, not a refused connection),
    so Redis may still run it later.
    """

    def __init__(self, message: str, *, maybe_ran: bool = False) -> None:
        super().__init__(message)
        self.maybe_ran = maybe_ran


class RedisStore:
    def __init__(self, url: str, timeout: float, *, cluster: bool = False) -> None:
        # Imported only by bundles that use Redis.
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.url = url
        self.timeout = timeout
        self.cluster = cluster
        self._client: Any
        if cluster:
            from redis.asyncio.cluster import RedisCluster

            self._client = RedisCluster.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
                max_connections=MAX_CONNECTIONS,
            )
        else:
            # A blocking pool: a burst of calls waits (within the timeout) for a connection
            # instead of failing with "too many connections" and so with on_store_error.
            pool = aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=MAX_CONNECTIONS,
                timeout=timeout,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),  # a retry would outlast the timeout
                health_check_interval=0,
            )
            self._client = aioredis.Redis(connection_pool=pool)
        self._check = self._client.register_script(CHECK)
        self._settle = self._client.register_script(SETTLE)
        self._down_until = 0.0
        self.up = True
        self.errors = 0
        self._pending: collections.deque[tuple[list[Cell], list[float], str, bool]] = (
            collections.deque(maxlen=MAX_PENDING)
        )
        self._drainer: asyncio.Task[None] | None = None

    @property
    def skipping(self) -> bool:
        """Recently failed: callers apply their failure mode without asking."""
        return not self.up and time.monotonic() < self._down_until

    async def check(self, cells: Sequence[Cell], member: str) -> Checked:
        groups = _slots(cells) if self.cluster else [list(range(len(cells)))]
        if len(groups) == 1:
            return await self._check_group(cells, member)
        # A Redis Cluster runs a script on one slot: one script per rule key, in turn;
        # a refusal rolls back the groups already charged, so nothing is spent.
        outcomes: list[Outcome] = [Outcome(0.0, 0.0, 0.0)] * len(cells)
        charged: list[list[int]] = []
        try:
            for group in groups:
                part = [cells[i] for i in group]
                checked = await self._check_group(part, member)
                for i, outcome in zip(group, checked.outcomes, strict=True):
                    outcomes[i] = outcome
                if not checked.admitted:
                    await self._roll_back(cells, charged, member)
                    return Checked(False, outcomes)
                charged.append(group)
        except StoreUnavailable:
            # The rest could not be checked: what was charged must not stay charged.
            with contextlib.suppress(StoreUnavailable):
                await self._roll_back(cells, charged, member)
            raise
        return Checked(True, outcomes)

    async def _roll_back(self, cells: Sequence[Cell], groups: list[list[int]], member: str) -> None:
        # As refunds of the check (consuming its marker), so a compensation of the same
        # call later finds nothing left to refund.
        for done in groups:
            back = [cells[i] for i in done]
            await self.settle(back, [-c.cost for c in back], member, undo=True)

    async def _check_group(self, cells: Sequence[Cell], member: str) -> Checked:
        args: list[Any] = [member, LEASE_S, MARK_S]
        for c in cells:
            args += [c.kind, c.limit, c.period, c.cost]
        keys = [c.key for c in cells]
        keys.append(_marker(cells[0].key, member))
        reply = await self._run(self._check, keys, args)
        values = [float(v) for v in reply[1:]]
        outcomes = [
            Outcome(
                values[i],
                values[i + 1],
                math.inf if values[i + 2] < 0 else values[i + 2],
            )
            for i in range(0, len(values), 3)
        ]
        return Checked(int(reply[0]) == 1, outcomes)

    async def settle(
        self, cells: Sequence[Cell], deltas: Sequence[float], member: str, *, undo: bool = False
    ) -> None:
        """Apply `deltas`; with `undo`, they refund the check itself, and are applied
        only where that check charged (its marker is there) and only once."""
        for group in self._groups(cells):
            keys, args = _settle_call(cells, group, deltas, member, undo)
            await self._run(self._settle, keys, args)

    def _groups(self, cells: Sequence[Cell]) -> list[list[int]]:
        return _slots(cells) if self.cluster else [list(range(len(cells)))]

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        if self.skipping:
            raise StoreUnavailable(f"redis at {_safe(self.url)} failed recently; not asked")
        try:
            async with asyncio.timeout(self.timeout):
                reply = await script(keys=keys, args=args)
        except Exception as exc:  # timeouts, refused connections, script errors alike
            self.errors += 1
            if self.up:
                log.warning(
                    "limit store unreachable",
                    extra={"store": _safe(self.url), "error": _describe(exc)},
                )
            self.up = False
            self._down_until = time.monotonic() + RETRY_AFTER_S
            raise StoreUnavailable(
                f"redis at {_safe(self.url)}: {_describe(exc)}",
                maybe_ran=isinstance(exc, TimeoutError),
            ) from exc
        if not self.up:
            log.info("limit store back", extra={"store": _safe(self.url)})
            self.up = True
        return reply

    def compensate(self, cells: Sequence[Cell], member: str) -> None:
        """Undo a check that timed out but may still run when Redis wakes: once Redis
        answers again (and has had a moment for what was queued), drop the lease and
        refund the reservation if the check charged. The check's script leaves a marker
        when it charges, and the refund consumes it: a check that never reached Redis
        (or was refused) takes nothing back from other calls' counts."""
        self.settle_later(cells, [-c.cost for c in cells], member, undo=True)

    def settle_later(
        self, cells: Sequence[Cell], deltas: Sequence[float], member: str, *, undo: bool = False
    ) -> None:
        """A settlement Redis did not take: kept (bounded) and applied once Redis answers,
        so a blip neither loses refunds nor leaves a concurrency lease for LEASE_S."""
        if len(self._pending) == self._pending.maxlen:
            log.warning("limit settlements dropped: too many waiting for Redis")
        self._pending.append((list(cells), list(deltas), member, undo))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        # Straight to the client: these probes must not mark the store up or down.
        deadline = time.monotonic() + LEASE_S
        pending = self._pending
        while pending and time.monotonic() < deadline:
            await asyncio.sleep(COMPENSATE_POLL_S)
            try:
                async with asyncio.timeout(self.timeout):
                    await self._client.ping()
            except Exception:
                continue
            await asyncio.sleep(COMPENSATE_POLL_S)  # let checks queued in Redis run first
            while pending:
                cells, deltas, member, undo = pending[0]
                try:
                    for group in self._groups(cells):
                        keys, args = _settle_call(cells, group, deltas, member, undo)
                        async with asyncio.timeout(self.timeout):
                            await self._settle(keys=keys, args=args)
                except Exception:
                    break
                pending.popleft()

    async def close(self) -> None:
        if self._drainer is not None and not self._drainer.done():
            self._drainer.cancel()
            with contextlib.suppress(BaseException):
                await self._drainer
        with contextlib.suppress(Exception):
            await self._client.aclose()


def _settle_call(
    cells: Sequence[Cell], group: list[int], deltas: Sequence[float], member: str, undo: bool
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of the settle script for one slot's cells."""
    keys = [cells[i].key for i in group]
    keys.append(_marker(keys[0], member))
    args: list[Any] = [member, 1 if undo else 0]
    for i in group:
        c = cells[i]
        args += [c.kind, c.limit, c.period, deltas[i]]
    return keys, args


def _marker(key: str, member: str) -> str:
    """The key saying a call's check charged these cells: in their hash tag's slot."""
    start = key.find("{")
    end = key.find("}", start + 1)
    if start >= 0 and end > start + 1:
        return f"{key[: end + 1]}|ran|{member}"
    return f"{{{key}}}|ran|{member}"


def _slots(cells: Sequence[Cell]) -> list[list[int]]:
    """Cell indexes grouped by hash tag (`{...}` in the key): one group per cluster slot."""
    groups: dict[str, list[int]] = {}
    for i, cell in enumerate(cells):
        key = cell.key
        start = key.find("{")
        end = key.find("}", start + 1)
        tag = key[start + 1 : end] if start >= 0 and end > start + 1 else key
        groups.setdefault(tag, []).append(i)
    return list(groups.values())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _safe(url: str) -> str:
    """The URL without its password, for logs."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return url
