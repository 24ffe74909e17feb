"""The bundle's `limits`, `pricing` and `redis` sections, compiled once per load.

A call's limits are decided from these at request time with no parsing left:
globs are compiled, periods are seconds, prices are per token.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from sidecar.bundle.validate import Problem
from sidecar.names import fold, glob

DIMENSIONS = ("tenant", "user", "agent", "model", "route", "tool")
MATCH_FIELDS = {
    "tenants": "tenant",
    "users": "user",
    "agents": "agent",
    "models": "model",
    "routes": "route",
    "tools": "tool",
}
_NAMES = frozenset({"models", "tools"})  # matched folded, as everywhere (sidecar.names)
_NAMED = frozenset({"model", "tool"})  # dimensions a call either names or lacks
CALENDAR = ("day", "month")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_WORDS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}

StoreName = Literal["memory", "redis"]
OnError = Literal["open", "closed", "local"]
TokenCount = Literal["total", "input", "output"]


@dataclass(frozen=True, slots=True)
class Quota:
    """`limit` units per `period` seconds (rolling), or per calendar `day`/`month` (UTC)."""

    limit: float
    period: float = 0.0
    calendar: str | None = None

    def describe(self, unit: str) -> str:
        amount = f"{self.limit:g}"
        if self.calendar:
            return f"{amount} {unit} per {self.calendar}"
        return f"{amount} {unit} per {_human(self.period)}"


@dataclass(frozen=True, slots=True)
class LimitRule:
    id: str
    match: tuple[tuple[str, re.Pattern[str]], ...]  # (dimension, compiled glob alternatives)
    roles: frozenset[str]
    key: tuple[str, ...]
    requests: Quota | None
    tokens: Quota | None
    token_count: TokenCount
    cost: Quota | None
    concurrent: int | None
    store: StoreName
    on_store_error: OnError
    reserve_output_tokens: int

    def matches(self, values: Mapping[str, str], roles: frozenset[str]) -> bool:
        for dimension, pattern in self.match:
            value = values.get(dimension, "")
            # A `tools` rule counts tool calls only, a `models` rule model calls only:
            # an absent name must not match a glob such as `*`.
            if (dimension in _NAMED and not value) or pattern.fullmatch(value) is None:
                return False
        return not self.roles or bool(self.roles & roles)

    @property
    def spends(self) -> bool:
        """True when the rule counts tokens or cost, which a call settles afterwards."""
        return self.tokens is not None or self.cost is not None


@dataclass(frozen=True, slots=True)
class Price:
    input: float  # dollars per token
    output: float


@dataclass(frozen=True, slots=True)
class RedisSettings:
    url: str | None  # None: the credential could not be read (see `problem`)
    timeout: float
    prefix: str
    problem: str | None = None
    cluster: bool = False


@dataclass(frozen=True, slots=True)
class LimitSet:
    rules: tuple[LimitRule, ...] = ()
    prices: tuple[tuple[str, re.Pattern[str] | None, Price], ...] = ()
    redis: RedisSettings | None = None
    # Per-snapshot memo of counter keys by (rule id, key values): a reload that changes a
    # rule gets a new LimitSet, and so new keys.
    keys: dict[tuple[str, tuple[str, ...]], tuple[str, dict[str, str]]] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

    def price(self, model: str | None) -> Price | None:
        if not model:
            return None
        for name, pattern, price in self.prices:
            if name == model if pattern is None else pattern.fullmatch(model):
                return price
        return None

    @property
    def empty(self) -> bool:
        return not self.rules


def parse_period(value: Any) -> tuple[float, str | None] | None:
    """`30s`, `1m`, `1h`, `24h`, `second`/`minute`/`hour` → seconds; `day`/`month` → calendar."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in CALENDAR:
            return 0.0, word
        if word in _WORDS:
            return _WORDS[word], None
        m = _DURATION.match(word)
        if m:
            seconds = float(m[1]) * _UNITS[m[2]]
            return (seconds, None) if seconds > 0 else None
    return None


def compile_limits(
    doc: Mapping[str, Any], resolve_secret: Any, problems: list[Problem]
) -> LimitSet:
    """`resolve_secret(where, ref)` returns (value, problem) for {env}/{file} references."""
    rules: list[LimitRule] = []
    seen: set[str] = set()
    for i, cfg in enumerate(doc.get("limits") or ()):
        path = f"limits[{i}]"
        if cfg["id"] in seen:
            problems.append(Problem(f"{path}.id", f"limit id {cfg['id']!r} is used twice"))
            continue
        seen.add(cfg["id"])
        rule = _rule(cfg, path, problems)
        if rule is not None:
            rules.append(rule)
    prices = tuple(
        (
            name,
            None if not any(c in name for c in "*?[") else glob(name),
            Price(float(p["input"]) / 1e6, float(p["output"]) / 1e6),
        )
        for name, p in ((fold(n), p) for n, p in (doc.get("pricing") or {}).items())
    )
    # Exact names first, then globs in the order written.
    prices = tuple(sorted(prices, key=lambda p: p[1] is not None))
    redis = None
    section = doc.get("redis")
    if section is not None:
        url, problem = resolve_secret("redis.url", section["url"])
        if url is not None:
            problem = _redis_url_problem(url)
            if problem is not None:
                url = None
        redis = RedisSettings(
            url=url,
            timeout=float(section.get("timeout_ms", 50)) / 1000.0,
            prefix=str(section.get("prefix", "sidecar:")),
            problem=problem,
            cluster=bool(section.get("cluster", False)),
        )
    if any(r.store == "redis" for r in rules) and redis is None:
        where = next(i for i, r in enumerate(rules) if r.store == "redis")
        problems.append(
            Problem(f"limits[{where}].store", "store: redis needs a top-level 'redis' section")
        )
    return LimitSet(rules=tuple(rules), prices=prices, redis=redis)


def _rule(cfg: Mapping[str, Any], path: str, problems: list[Problem]) -> LimitRule | None:
    before = len(problems)
    quotas: dict[str, Quota | None] = {}
    for name in ("requests", "tokens", "cost"):
        q = cfg.get(name)
        if q is None:
            quotas[name] = None
            continue
        parsed = parse_period(q.get("per"))
        if parsed is None:
            problems.append(
                Problem(
                    f"{path}.{name}.per",
                    f"{q.get('per')!r} is not a period: write a duration such as 30s, 1m, 1h "
                    "or 24h (rolling), or day or month (calendar, UTC)",
                )
            )
            continue
        seconds, calendar = parsed
        if name == "requests" and calendar is not None:
            problems.append(
                Problem(
                    f"{path}.requests.per",
                    f"request limits are rolling (no double burst at a window's edge): "
                    f"write 24h instead of {calendar!r}",
                )
            )
            continue
        quotas[name] = Quota(float(q["limit"]), seconds, calendar)
    concurrent = cfg.get("concurrent")
    if not any(quotas.values()) and concurrent is None and len(problems) == before:
        problems.append(
            Problem(path, "a limit needs at least one of requests, tokens, cost or concurrent")
        )
    key = tuple(cfg.get("key") or ())
    for j, dim in enumerate(key):
        if key.index(dim) != j:
            problems.append(Problem(f"{path}.key[{j}]", f"{dim!r} is listed twice"))
    if len(problems) > before:
        return None
    match = cfg.get("match") or {}
    compiled = tuple(
        (
            MATCH_FIELDS[field],
            _globs([fold(v) for v in match[field]] if field in _NAMES else match[field]),
        )
        for field in MATCH_FIELDS
        if match.get(field)
    )
    tokens = cfg.get("tokens") or {}
    return LimitRule(
        id=cfg["id"],
        match=compiled,
        roles=frozenset(match.get("roles") or ()),
        key=key,
        requests=quotas.get("requests"),
        tokens=quotas.get("tokens"),
        token_count=tokens.get("count", "total"),
        cost=quotas.get("cost"),
        concurrent=int(concurrent) if concurrent is not None else None,
        store=cfg.get("store", "memory"),
        on_store_error=cfg.get("on_store_error", "local"),
        reserve_output_tokens=int(cfg.get("reserve_output_tokens", 1024)),
    )


def _globs(values: Sequence[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{fnmatch.translate(v)})" for v in values), re.DOTALL)


def _human(seconds: float) -> str:
    for unit, size in (("day", 86400.0), ("hour", 3600.0), ("minute", 60.0)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return unit if n == 1 else f"{n} {unit}s"
    return "second" if seconds == 1 else f"{seconds:g} seconds"


def _redis_url_problem(url: str) -> str | None:
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return "redis.url: not a redis://, rediss:// or unix:// URL"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        return f"redis.url: cannot be read as a URL ({exc})"
    if parts.scheme != "unix" and not parts.hostname:
        return "redis.url: names no host"
    return None
