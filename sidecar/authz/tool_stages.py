"""Tool governance as two stages: the tools a request offers, the calls a reply proposes.

The offer stage authorizes each offered tool (Cedar action `tool.call` on
`Sidecar::Tool`) and removes the forbidden ones, or refuses the call, as the
bundle says. The gate stage refuses a plain reply that proposes a call to a
forbidden tool; for streams the relay asks the same gate, event by event.
Which tools a reply proposes is the adapter's reading (the reply's view, or
the decoded stream events); the gate only decides names.
"""

from __future__ import annotations

from sidecar.authz.context import CallContext
from sidecar.authz.tools import ToolGate
from sidecar.chain.exchange import Exchange
from sidecar.chain.stage import PlainReply, Stage, StreamHook
from sidecar.errors import ErrorKind, SidecarError
from sidecar.events import StreamEvent
from sidecar.telemetry import names


class ToolOffer(Stage):
    name = "tool_offer"
    span_name = names.SPAN_TOOL_OFFER

    def request(self, ex: Exchange) -> None:
        assert ex.gen is not None and ex.call is not None and ex.principal is not None
        call, principal, codec = ex.call, ex.principal, ex.call.codec
        if codec is None or not codec.offers_tools(call.path, call.body):
            return  # most calls offer no tools: skip the extraction
        gate = ToolGate(ex.gen.snapshot.authorizer, principal, CallContext(call, principal))
        ex.tool_gate = gate
        forbidden = gate.forbidden(call.tool_names)
        if forbidden:
            if ex.gen.snapshot.tool_request_mode == "deny":
                listed = ", ".join(f"'{n}'" for n in forbidden)
                raise SidecarError(
                    ErrorKind.FORBIDDEN,
                    f"the request offers tools {listed} that principal '{principal.id}' may "
                    f"not call [bundle revision {ex.gen.snapshot.revision}]",
                    code="tool_forbidden",
                )
            codec.without_tools(call.path, call.body, set(forbidden))
            call.edited()
            ex.tools_removed = tuple(forbidden)
        ex.tool_servers = codec.tool_urls(call.path, call.body)


class ToolCallGate(Stage):
    name = "tool_gate"

    def reply(self, ex: Exchange, reply: PlainReply) -> None:
        if ex.tool_gate is None or ex.call is None:
            return
        violations = ex.tool_gate.forbidden(reply.view(ex.codec, ex.call.path).tools)
        if violations:
            raise blocked_tool_call(ex, violations)

    def stream(self, ex: Exchange, ok: bool) -> StreamHook | None:
        return _GateHook(ex, ex.tool_gate) if ok and ex.tool_gate is not None else None


class _GateHook(StreamHook):
    """Refuses a stream before the event that starts a forbidden tool call goes out."""

    error_type = "tool_call_blocked"

    def __init__(self, ex: Exchange, gate: ToolGate) -> None:
        self.ex = ex
        self.gate = gate

    def events(self, events: list[StreamEvent]) -> list[StreamEvent]:
        names = [name for event in events for name in event.tools]
        if names:
            violations = self.gate.forbidden(names)
            if violations:
                raise blocked_tool_call(self.ex, violations)
        return events


def blocked_tool_call(ex: Exchange, names: list[str]) -> SidecarError:
    who = ex.principal.id if ex.principal else "?"
    listed = ", ".join(f"'{n}'" for n in names)
    return SidecarError(
        ErrorKind.FORBIDDEN,
        f"the model proposed a call to tool {listed}, which principal '{who}' may not "
        f"call; the response was blocked [bundle revision {ex.revision}]",
        code="tool_call_blocked",
    )
