"""Tool governance at the model boundary: tools offered in, tool calls proposed out.

A request's tools are authorized one by one (Cedar action `tool.call` on
`Sidecar::Tool`); forbidden ones are removed from the request or refuse the
call, as the bundle says. A response proposing a call to a forbidden tool
is blocked — for streams, before the event that names the tool reaches the
agent. Only responses to requests that offered tools are inspected. The gate
decides names; which tools a reply or a stream event proposes is the
adapters' reading (`sidecar.events`), so nothing here parses a wire format.
"""

from __future__ import annotations

from collections.abc import Iterable

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
