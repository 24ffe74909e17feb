"""Header rules for the hop between the agent and a provider.

Only an allow-list of the agent's headers travels on (see
`sidecar.upstream.config`): a header the sidecar does not know could pick
another account or project of the operator's key. The agent's credentials
never leave the sidecar; hop-by-hop headers end at this hop; the upstream's
own credential and static headers are injected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from multidict import CIMultiDict

from sidecar.bundle.snapshot import UpstreamSpec
from sidecar.call import Provider
from sidecar.upstream.config import HOP_BY_HOP

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
    # Allowed names never include the credentials, hop-by-hop or x-sidecar-* headers
    # (the bundle cannot list them); a header the agent's Connection names ends here.
    extra_drop = _connection_tokens(incoming)
    allowed = spec.transport.forward_headers
    prefixes = spec.transport.forward_prefixes
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in _items(incoming):
        low = name.lower()
        if (low in allowed or low.startswith(prefixes)) and low not in extra_drop:
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
