"""What one call carries through its chain: the request, and what each stage decided.

Each field is written by one stage and read by later ones; the comment
beside it names the writer. The runner owns the span and the timings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from multidict import CIMultiDict
from opentelemetry.trace import Span

from sidecar.call import Call, Usage
from sidecar.errors import SidecarError
from sidecar.events import ReplyView

if TYPE_CHECKING:
    from sidecar.authz.authorize import Decision
    from sidecar.authz.tools import ToolGate
    from sidecar.bundle.snapshot import Route, UpstreamSpec
    from sidecar.bundle.store import Generation
    from sidecar.guards.stage import Record, Subject
    from sidecar.identity.principal import Principal
    from sidecar.limits.limiter import Admission

DECISION_HEADER = "x-sidecar-decision-id"
REVISION_HEADER = "x-sidecar-bundle-revision"
UPSTREAM_HEADER = "x-sidecar-upstream"
TOOLS_REMOVED_HEADER = "x-sidecar-tools-removed"
REDACTED_HEADER = "x-sidecar-redacted"


@dataclass
class Exchange:
    """One call's state, from the surface's first byte to its completion."""

    decision_id: str
    revision: str
    started: float
    gen: Generation | None = None  # the bundle generation the call runs on (surface)
    call: Call | None = None  # the normalized request (surface)
    codec: Any = None  # the surface's wire codec: error shapes, replies, streams (surface)
    span: Span | None = None  # the call's span (runner)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage (runner)
    principal: Principal | None = None  # identify
    decision: Decision | None = None  # authorize
    tool_gate: ToolGate | None = None  # tool offer: set when the request offered tools
    tools_removed: tuple[str, ...] = ()  # tool offer
    tool_servers: list[tuple[str, str]] | None = None  # tool offer: remote tool servers
    route: Route | None = None  # route
    upstream: UpstreamSpec | None = None  # route, then forward (the one that answered)
    guards: Record | None = None  # guards: set when the bundle has guards
    subject: Subject | None = None  # guards
    admission: Admission | None = None  # limits: set when limits apply to the call
    limit_headers: list[tuple[str, str]] | None = None  # limits
    drop_usage_chunk: bool = False  # limits: usage was asked for on the sidecar's behalf
    limit_refused: str | None = None  # limits: the rule that refused the call
    relay_started: bool = False  # forward: the stream relay ran (and closes its own books)
    reply_body: ReplyView | None = None  # forward: a plain success, as the reply stages view it
    attempts: int = 0  # forward: upstream attempts, retries and fallbacks included
    deadline_s: float | None = None  # forward: the call's total deadline, when one applies

    def sidecar_headers(self) -> CIMultiDict[str]:
        """The headers every reply carries: who decided, on which bundle, and what changed."""
        headers: CIMultiDict[str] = CIMultiDict()
        headers[DECISION_HEADER] = self.decision_id
        headers[REVISION_HEADER] = self.revision
        if self.upstream is not None:
            headers[UPSTREAM_HEADER] = self.upstream.name
        if self.tools_removed:
            headers[TOOLS_REMOVED_HEADER] = ",".join(self.tools_removed)
        if self.guards is not None and self.guards.hits:
            redacted = self.guards.redactions()
            if redacted:
                headers[REDACTED_HEADER] = ",".join(f"{g}={n}" for g, n in redacted.items())
        if self.limit_headers:
            headers.extend(self.limit_headers)
        return headers


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a chain without a forward decided: allow, or the refusal that denied."""

    allowed: bool
    decision_id: str
    revision: str
    policies: tuple[str, ...]  # the @ids of the policies that decided, when authz decided
    error: SidecarError | None = None  # the refusal, typed: its kind decides the status
    headers: CIMultiDict[str] | None = None  # the sidecar's response headers for the call


@dataclass(slots=True)
class Outcome:
    """How a call ended, for the completion hooks (settlement, accounting)."""

    status: int
    usage: Usage = field(default_factory=Usage)
    error_type: str | None = None
    elapsed: float = 0.0
    # A plain reply, as the reply stages viewed it: usage is read from it after the
    # reply is on the wire, not before (parsed then, if no stage parsed it).
    body: ReplyView | None = None
