"""An external classifier as a guard: POST the texts, act on its verdict.

The request is JSON: `{"guard", "stage", "texts": [{"channel", "text"}],
"context": {"route", "tenant", "model", "roles"}}`. The answer is JSON:
`{"action": "block" | "redact" | "pass", "findings": [{"index", "type",
"start", "end", "confidence"}]}` where `index` points into `texts` and the
span into that text. The guard's own `action` caps what the verdict may do:
a `monitor` guard records a block verdict but lets the call pass.

A verdict that does not arrive within the guard's timeout, a non-2xx status,
or an answer that is not in that shape is an error, handled by the guard's
fail mode like any other guard error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from multidict import CIMultiDict

from sidecar.call import Text
from sidecar.guards.config import Guard
from sidecar.guards.finding import Finding
from sidecar.upstream.h1 import Pool

_POOLS: dict[tuple[str, int, bool], Pool] = {}


class WebhookError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Verdict:
    action: str  # block | redact | pass
    findings: list[tuple[int, Finding]]


def _pool(url: str, timeout: float) -> tuple[Pool, str]:
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    host = parts.hostname or "localhost"
    port = parts.port or (443 if tls else 80)
    key = (host, port, tls)
    pool = _POOLS.get(key)
    if pool is None or pool.closed:
        pool = Pool(host, port, tls=tls, connect_timeout=timeout, read_timeout=timeout)
        _POOLS[key] = pool
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return pool, target


def _verdict(guard: Guard, raw: bytes, texts: Sequence[Text]) -> Verdict:
    try:
        doc: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise WebhookError(f"answer is not JSON: {exc}") from None
    action = doc.get("action") if isinstance(doc, dict) else None
    if action not in ("block", "redact", "pass"):
        raise WebhookError("answer has no action of block, redact or pass")
    findings: list[tuple[int, Finding]] = []
    for item in doc.get("findings") or ():
        try:
            index = int(item.get("index", 0))
            text = texts[index].text
            start = max(0, min(int(item.get("start", 0)), len(text)))
            end = max(start, min(int(item.get("end", len(text))), len(text)))
            type_ = str(item.get("type") or "WEBHOOK").upper()
            confidence = float(item.get("confidence", 1.0))
        except (AttributeError, IndexError, TypeError, ValueError):
            raise WebhookError("a finding in the answer is malformed") from None
        findings.append((index, Finding("webhook", type_, start, end, confidence, guard.id)))
    return Verdict(action, findings)


async def ask(guard: Guard, stage: str, texts: Sequence[Text], context: dict[str, Any]) -> Verdict:
    hook = guard.webhook
    assert hook is not None
    body = orjson.dumps(
        {
            "guard": guard.id,
            "stage": stage,
            "texts": [{"channel": t.channel, "text": t.text} for t in texts],
            "context": context,
        }
    )
    pool, target = _pool(hook.url, hook.timeout)
    headers: CIMultiDict[str] = CIMultiDict(hook.headers)
    headers["content-type"] = "application/json"
    try:
        async with asyncio.timeout(hook.timeout):
            resp = await pool.request("POST", target, headers, body)
            raw = await resp.read()
    except TimeoutError:
        raise WebhookError(f"no verdict within {hook.timeout * 1000:.0f} ms") from None
    except OSError as exc:
        raise WebhookError(str(exc)) from None
    if not 200 <= resp.status < 300:
        raise WebhookError(f"classifier answered HTTP {resp.status}")
    return _verdict(guard, raw, texts)
