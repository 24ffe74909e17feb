"""Header rules for the hop between the agent and a provider.

The agent's credentials never leave the sidecar; hop-by-hop headers end at
this hop; the upstream's own credential and static headers are injected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from multidict import CIMultiDict

from sidecar.bundle.snapshot import UpstreamSpec
from sidecar.call import Provider

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Never sent upstream: the agent's identity credentials, headers the client
# library recomputes, and the trace context we re-inject as our own child.
_REQUEST_DROP = HOP_BY_HOP | {
    "host",
    "content-length",
    "authorization",
    "x-api-key",
    "api-key",
    "cookie",
    "accept-encoding",
    "expect",
    "traceparent",
    "tracestate",
}
# Never passed back to the agent: framing the server recomputes, and bodies
# are already decompressed by the client library.
_RESPONSE_DROP = HOP_BY_HOP | {"content-length", "content-encoding", "set-cookie", "date", "server"}

ANTHROPIC_VERSION = "2023-06-01"


def _connection_tokens(headers: Mapping[str, str]) -> set[str]:
    value = headers.get("connection")
    if not value:
        return set()
    return {t.strip().lower() for t in value.split(",") if t.strip()}


def upstream_headers(
    incoming: Mapping[str, str], spec: UpstreamSpec, trace_headers: Mapping[str, str]
) -> CIMultiDict[str]:
    extra_drop = _connection_tokens(incoming)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in _items(incoming):
        low = name.lower()
        if low in _REQUEST_DROP or low in extra_drop or low.startswith("x-sidecar-"):
            continue
        out.add(name, value)
    for name, value in spec.headers:
        out[name] = value
    if spec.provider is Provider.ANTHROPIC and "anthropic-version" not in out:
        out["anthropic-version"] = ANTHROPIC_VERSION
    if "content-type" not in out:
        out["content-type"] = "application/json"
    out.update(trace_headers)
    return out


def downstream_headers(upstream: Mapping[str, str]) -> CIMultiDict[str]:
    extra_drop = _connection_tokens(upstream)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in _items(upstream):
        low = name.lower()
        if low in _RESPONSE_DROP or low in extra_drop or low.startswith("x-sidecar-"):
            continue
        out.add(name, value)
    return out


def _items(headers: Mapping[str, str]) -> Iterable[tuple[str, str]]:
    # multidict keeps repeated headers as separate items; plain dicts have one each.
    return headers.items()
