"""The authorize stage: may this principal take this action on this resource?

Default-deny: with no permitting policy the call is refused, and the
refusal names the deciding policies, or says that none permits.
"""

from __future__ import annotations

from opentelemetry.trace import Span

from sidecar.authz.context import CallContext
from sidecar.chain.exchange import Exchange
from sidecar.chain.stage import Stage
from sidecar.errors import ErrorKind, SidecarError
from sidecar.identity.principal import Principal
from sidecar.telemetry import names
from sidecar.telemetry.instruments import Instruments


class Authorize(Stage):
    name = "authorize"
    span_name = names.SPAN_AUTHORIZE

    def __init__(self, instruments: Instruments, recording: bool) -> None:
        self._m = instruments
        self.recording = recording

    def request(self, ex: Exchange) -> None:
        assert ex.gen is not None and ex.call is not None and ex.principal is not None
        call, principal = ex.call, ex.principal
        resource = call.resource
        decision = ex.gen.snapshot.authorizer.decide(
            principal, call.action, resource.type, resource.id, CallContext(call, principal)
        )
        ex.decision = decision
        self._m.decisions.add(1, (call.action, "allow" if decision.allowed else "deny"))
        if self.recording and ex.span is not None:
            _mark(ex.span, ex)
        if decision.allowed:
            return
        what = f"{call.action} on {resource.type.lower()} '{resource.id}'"
        if decision.policies:
            by = ", ".join(f"'{p}'" for p in decision.policies)
            message = f"denied by policy {by}: {what} for {_who(principal)}"
        else:
            message = (
                f"no policy permits {what} for {_who(principal)}; the sidecar denies by default"
            )
        raise SidecarError(
            ErrorKind.FORBIDDEN,
            f"{message} [bundle revision {ex.gen.snapshot.revision}]",
            code="policy_denied",
        )

    def describe(self, ex: Exchange, span: Span, error: SidecarError | None) -> None:
        if ex.decision is not None:
            _mark(span, ex)


def _mark(span: Span, ex: Exchange) -> None:
    assert ex.decision is not None
    span.set_attribute(names.SIDECAR_DECISION, "allow" if ex.decision.allowed else "deny")
    if ex.decision.policies:
        span.set_attribute(names.SIDECAR_POLICIES, ex.decision.policies)


def _who(principal: Principal) -> str:
    roles = f"roles {', '.join(sorted(principal.roles))}" if principal.roles else "no roles"
    return f"principal '{principal.id}' (tenant '{principal.tenant}', {roles})"
