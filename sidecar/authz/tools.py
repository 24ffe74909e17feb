"""Tool governance at the model boundary: tools offered in, tool calls proposed out.

A request's tools are authorized one by one (Cedar action `tool.call` on
`Sidecar::Tool`); forbidden ones are removed from the request or refuse the
call, as the bundle says. A response proposing a call to a forbidden tool
is blocked — for streams, before the event that names the tool reaches the
agent. Only responses to requests that offered tools are inspected, and only
events that contain a tool-call marker are parsed.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from sidecar.adapters.base import Adapter
from sidecar.adapters.sse import parse_events
from sidecar.authz.authorize import Authorizer
from sidecar.authz.context import CallContext
from sidecar.identity.principal import Principal


class ToolGate:
    """Which tools this caller may call, decided once per tool name per call."""

    def __init__(self, authorizer: Authorizer, principal: Principal, context: CallContext) -> None:
        self._authorizer = authorizer
        self._principal = principal
        self._context = context
        self._allowed: dict[str, bool] = {}

    def forbidden(self, names: Iterable[str]) -> list[str]:
        out: list[str] = []
        for name in names:
            allowed = self._allowed.get(name)
            if allowed is None:
                allowed = self._authorizer.decide(
                    self._principal, "tool.call", "Tool", name, self._context
                ).allowed
                self._allowed[name] = allowed
            if not allowed and name not in out:
                out.append(name)
        return out


def response_violations(adapter: Adapter, path: str, raw: bytes, gate: ToolGate) -> list[str]:
    if not any(marker in raw for marker in adapter.tool_markers):
        return []
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(body, dict):
        return []
    return gate.forbidden(adapter.proposed_tools(path, body))


def stream_violations(adapter: Adapter, path: str, events: bytes, gate: ToolGate) -> list[str]:
    """Forbidden tool calls started in a run of complete SSE events."""
    if not any(marker in events for marker in adapter.tool_markers):
        return []
    names: list[str] = []
    for event in parse_events(events):
        if not any(marker in event.data for marker in adapter.tool_markers):
            continue
        try:
            obj = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            names += adapter.event_tools(path, obj)
    return gate.forbidden(names)
