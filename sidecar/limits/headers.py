"""The provider's own rate-limit headers, filled from the tightest rule.

SDKs and agent frameworks already read these (`x-ratelimit-*` from OpenAI,
`anthropic-ratelimit-*` from Anthropic) to pace themselves; reporting our
limits in the same words makes that logic work against the sidecar's rules.
"""

from __future__ import annotations

import math
import time

from sidecar.call import Provider
from sidecar.limits.limiter import Entry


def rate_limit_headers(entries: list[Entry], provider: Provider | None) -> list[tuple[str, str]]:
    by_dim: dict[str, Entry] = {}
    for entry in entries:
        if entry.outcome is None or entry.dim not in ("requests", "tokens"):
            continue
        held = by_dim.get(entry.dim)
        if held is None or _tighter(entry, held):
            by_dim[entry.dim] = entry
    out: list[tuple[str, str]] = []
    anthropic = provider is Provider.ANTHROPIC
    for dim, entry in by_dim.items():
        outcome = entry.outcome
        assert outcome is not None and entry.quota is not None
        limit = str(int(entry.quota.limit))
        remaining = str(int(outcome.remaining))
        if anthropic:
            name = dim
            if dim == "tokens" and entry.rule.token_count != "total":
                name = f"{entry.rule.token_count}-tokens"
            reset = _rfc3339(math.ceil(time.time() + outcome.reset_after))  # never early
            out += [
                (f"anthropic-ratelimit-{name}-limit", limit),
                (f"anthropic-ratelimit-{name}-remaining", remaining),
                (f"anthropic-ratelimit-{name}-reset", reset),
            ]
        else:
            out += [
                (f"x-ratelimit-limit-{dim}", limit),
                (f"x-ratelimit-remaining-{dim}", remaining),
                (f"x-ratelimit-reset-{dim}", duration(outcome.reset_after)),
            ]
    return out


def _tighter(a: Entry, b: Entry) -> bool:
    assert a.outcome is not None and b.outcome is not None
    if a.outcome.remaining != b.outcome.remaining:
        return a.outcome.remaining < b.outcome.remaining
    return a.outcome.reset_after > b.outcome.reset_after


def duration(seconds: float) -> str:
    """OpenAI's spelling: `20ms`, `1.5s`, `6m0s`, `1h2m3s`."""
    ms = max(0, round(seconds * 1000))  # rounded once, so 59.9996 s carries to 1m0s
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    text = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
