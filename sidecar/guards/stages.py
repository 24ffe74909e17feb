"""The guard stages of a chain: tool servers and input before forwarding, output after.

The engines (`guards.stage`) know texts and findings; these units know when
in a call they run and what they leave for the rest of it: the `Record` of
findings and the `Subject` that scopes each guard. The first guard stage to
run sets both up, so a bundle with only output guards still gets them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from functools import partial

from opentelemetry.trace import Span

from sidecar.bundle.snapshot import Snapshot
from sidecar.chain.exchange import Exchange
from sidecar.chain.runner import Spans
from sidecar.chain.stage import PlainReply, Stage, StreamHook
from sidecar.errors import SidecarError
from sidecar.events import EventEditor, StreamEvent
from sidecar.guards import offload
from sidecar.guards.servers import check_server_urls
from sidecar.guards.stage import (
    OutputFilter,
    Record,
    Subject,
    check_input,
    check_output,
    check_tool_call,
)
from sidecar.telemetry import names


def record_for(ex: Exchange, spans: Spans) -> tuple[Record, Subject]:
    """This call's guard record and subject, made on first use."""
    if ex.guards is None or ex.subject is None:
        assert ex.call is not None and ex.principal is not None
        p = ex.principal
        ex.guards = Record(trace=_tracer(ex, spans) if spans.recording else None)
        ex.subject = Subject(ex.route.name if ex.route else "", p.tenant, ex.call.model, p.roles)
    return ex.guards, ex.subject


def describe(
    ex: Exchange, stage: str, start: int = 0
) -> Callable[[Span, SidecarError | None], None]:
    """Sets a guard span's findings, types, guard ids and outcome for `stage`'s hits."""

    def set_on(span: Span, err: SidecarError | None) -> None:
        if ex.guards is None:
            return
        hits = [h for h in ex.guards.hits[start:] if h.stage == stage]
        span.set_attribute(names.SIDECAR_GUARD_FINDINGS, len(hits))
        if hits:
            span.set_attribute(names.SIDECAR_GUARD_TYPES, sorted({h.type for h in hits}))
            span.set_attribute(names.SIDECAR_GUARD_ID, sorted({h.guard for h in hits}))
        outcome = (
            "block"
            if err is not None
            else ("redact" if any(h.action == "redact" for h in hits) else "pass")
        )
        span.set_attribute(names.SIDECAR_GUARD_OUTCOME, outcome)

    return set_on


def _tracer(ex: Exchange, spans: Spans) -> Callable[[str], AbstractContextManager[None]]:
    """How the engines wrap a guard family in its span (`guard.output`, `guard.tool`)."""

    @contextlib.contextmanager
    def stage(name: str) -> Iterator[None]:
        start = len(ex.guards.hits) if ex.guards is not None else 0
        with spans.around(ex, f"guard.{name}", describe(ex, name, start)):
            yield

    return stage


class ToolServerGuards(Stage):
    """Egress guards over the remote tool servers a request asks the provider to call."""

    name = "tool_servers"

    def __init__(self, spans: Spans) -> None:
        self.spans = spans

    def applies(self, snapshot: Snapshot) -> bool:
        return bool(snapshot.guards.tool)

    def request(self, ex: Exchange) -> None:
        if not ex.tool_servers:
            return
        assert ex.gen is not None
        record, subject = record_for(ex, self.spans)
        check_server_urls(ex.gen.snapshot.guards, ex.tool_servers, subject, record)


class InputGuards(Stage):
    name = "guard_input"
    span_name = names.SPAN_GUARD_INPUT

    def __init__(self, spans: Spans) -> None:
        self.spans = spans

    def applies(self, snapshot: Snapshot) -> bool:
        return bool(snapshot.guards.input)

    async def request(self, ex: Exchange) -> None:
        assert ex.gen is not None and ex.call is not None
        record, subject = record_for(ex, self.spans)
        if await check_input(ex.gen.snapshot.guards, ex.call.texts, subject, record):
            ex.call.edited()

    def describe(self, ex: Exchange, span: Span, error: SidecarError | None) -> None:
        describe(ex, "input")(span, error)


class ToolCallGuards(Stage):
    """Tool guards over the arguments of the tool calls a request makes (a tool check)."""

    name = "guard_tool"

    def __init__(self, spans: Spans) -> None:
        self.spans = spans

    def applies(self, snapshot: Snapshot) -> bool:
        return bool(snapshot.guards.tool)

    async def request(self, ex: Exchange) -> None:
        assert ex.gen is not None and ex.call is not None
        record, subject = record_for(ex, self.spans)
        gs = ex.gen.snapshot.guards
        for tc in ex.call.tool_calls:
            check = partial(check_tool_call, gs, tc.name, tc.arguments, subject, record)
            await offload.run(len(tc.arguments), check)


class OutputGuards(Stage):
    """Output guards over a plain reply; a stream's are `stream_filter`'s, in the relay."""

    name = "guard_output"

    def __init__(self, spans: Spans) -> None:
        self.spans = spans

    def applies(self, snapshot: Snapshot) -> bool:
        return not snapshot.guards.empty

    def stream(self, ex: Exchange, ok: bool) -> StreamHook | None:
        if not ok or ex.call is None:
            return None
        flt = stream_filter(ex, self.spans)
        if flt is None:
            return None
        editor = ex.codec.stream_editor(ex.call.path, flt)
        return _EditorHook(editor, ex, self.spans) if editor is not None else None

    async def reply(self, ex: Exchange, reply: PlainReply) -> None:
        assert ex.gen is not None and ex.call is not None
        record, subject = record_for(ex, self.spans)
        gs = ex.gen.snapshot.guards
        if not (gs.output or gs.tool or record.vault is not None):
            return
        view = reply.view(ex.codec, ex.call.path)
        if view.body is None:
            return
        texts, calls = view.texts()
        with record.stage("output"):
            if await check_output(gs, texts, calls, subject, record):
                view.edit()
        if gs.output:
            view.scrub()


class _EditorHook(StreamHook):
    """The output guards over a stream: text deltas held back, redacted or blocked.

    The `guard.output` span covers the stream from its first event to its end.
    """

    error_type = "guard_blocked"

    def __init__(self, editor: EventEditor, ex: Exchange, spans: Spans) -> None:
        self.editor = editor
        self.ex = ex
        self.spans = spans
        self.span = spans.open(ex, names.SPAN_GUARD_OUTPUT) if spans.recording else None

    def events(self, events: list[StreamEvent]) -> list[StreamEvent]:
        return self.editor.feed(events)

    def close(self, events: list[StreamEvent]) -> list[StreamEvent]:
        # The caller's parser drops an event that never ended, and the guards never
        # read it: it does not go out. What the guards still hold does.
        for event in events:
            event.drop()
        return [*events, *self.editor.close()]

    def end(self, error: SidecarError | None) -> None:
        if self.span is not None:
            self.spans.close(self.span, error, describe(self.ex, "output"))
            self.span = None


def stream_filter(ex: Exchange, spans: Spans) -> OutputFilter | None:
    """The output guards' filter for a streamed reply, when this call has any."""
    if ex.gen is None or ex.gen.snapshot.guards.empty:
        return None
    record, subject = record_for(ex, spans)
    flt = OutputFilter(ex.gen.snapshot.guards, subject, record)
    return flt if flt.active else None
