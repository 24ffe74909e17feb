"""The stream relay: upstream bytes through the response stages to the caller.

Without a response stage (no tool gate, no output guard, no usage chunk to
drop, no budget charging the text) the upstream's own bytes go out, only held
back to whole events, and a cheap observer learns usage. With one, each run
of whole events is decoded once by the adapter, the stages read (and may
mark) the decoded events, and the adapter encodes them again: the original
bytes for every event no stage changed. A forbidden call or a finding is
acted on before any of its bytes go out; a block ends the stream with a
provider-shaped error event. What the call cost and how it ended go to
`on_end`, whatever way the stream stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from opentelemetry.trace import Span

from sidecar.adapters.base import Adapter
from sidecar.adapters.sse import EventFramer, EventTooLarge
from sidecar.authz.tools import ToolGate
from sidecar.bounds import ResponseBounds, oversize
from sidecar.bundle.snapshot import UpstreamSpec
from sidecar.call import Call, Usage
from sidecar.errors import SidecarError
from sidecar.events import EventEditor, StreamEvent
from sidecar.forward.attempt import end_attempt, end_error
from sidecar.forward.failures import upstream_failure
from sidecar.limits.limiter import Admission
from sidecar.upstream.base import UpstreamResponse


@dataclass(slots=True)
class ResponseStages:
    """The stages a streamed response passes, as the call's earlier stages left them.

    Each reads the adapter's decoded events; with none of them the stream is
    not decoded at all.
    """

    gate: ToolGate | None = None  # the tool gate, when the request offered tools
    editor: EventEditor | None = None  # the output guards, when the bundle has them
    drop_usage: bool = False  # usage was asked for upstream on the sidecar's behalf
    spend: Admission | None = None  # a limit that charges the text produced

    def active(self, ok: bool) -> bool:
        """Whether any stage reads a stream with this status (`ok`: a 2xx)."""
        return (
            (ok and (self.gate is not None or self.drop_usage))
            or self.editor is not None
            or self.spend is not None
        )


class Oversize(Exception):
    """A stream crossed a bound (what, limit); it ends with an error event."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(what)
        self.what = what
        self.limit = limit


async def relay(
    adapter: Adapter,
    call: Call,
    upstream: UpstreamSpec | None,
    resp: UpstreamResponse,
    attempt: Span,
    bounds: ResponseBounds,
    stages: ResponseStages,
    blocked: Callable[[list[str]], SidecarError],
    on_start: Callable[[], None],
    on_first_chunk: Callable[[], None],
    on_end: Callable[[Usage, str | None, SidecarError | None], None],
) -> AsyncIterator[bytes]:
    """Pass each run of whole events on as it arrives, learning usage on the way.

    `blocked` words the error for forbidden tool calls; `on_start` runs when the
    caller first asks for a chunk (a stream never asked for has no books to
    close); `on_end` gets the usage seen, the error type (None for a success)
    and the output guards' error.
    """
    on_start()
    first = True
    error_type: str | None = None if resp.status < 400 else str(resp.status)
    ok = resp.status < 300
    gate = stages.gate if ok else None
    editor = stages.editor
    spend = stages.spend
    drop_usage = stages.drop_usage and ok
    decoder = adapter.stream_decoder(call.path) if stages.active(ok) else None
    observer = adapter.stream_observer(call.path) if decoder is None else None
    max_event, max_total = bounds.max_event_bytes, bounds.max_response_bytes
    # Only whole events go out: a stream that breaks mid-event then ends with an error
    # event the SDK can still read, and a stage acts on an event before any of it leaves.
    framer = EventFramer(max_event)
    guard_error: SidecarError | None = None
    received = 0  # bytes from the upstream
    try:
        async for chunk in resp.chunks():
            received += len(chunk)
            if received > max_total:
                raise Oversize("a response", max_total)
            if observer is not None:
                observer.feed(chunk)
                chunk = framer.feed(chunk)  # one search per chunk
                if not chunk:
                    continue
            elif decoder is not None:
                chunk = framer.feed(chunk)
                if not chunk:
                    continue
                events = decoder.decode(chunk)  # usage is learnt here, on the same parse
                decoded = len(events)
                if gate is not None:
                    violations = gate.forbidden([name for e in events for name in e.tools])
                    if violations:
                        err = blocked(violations)
                        error_type = "tool_call_blocked"
                        end_error(attempt, None, err.message)
                        resp.close()
                        yield adapter.stream_error(err)
                        return
                if spend is not None:
                    # What the model generated, before any redaction: what the provider bills.
                    for event in events:
                        spend.produced_chars += event.text_chars
                if editor is not None:
                    try:
                        events = editor.feed(events)
                    except SidecarError as err:
                        guard_error = err
                        error_type = "guard_blocked"
                        end_error(attempt, None, err.message)
                        resp.close()
                        yield adapter.stream_error(err)
                        return
                if drop_usage:
                    _drop_usage_chunks(events)
                chunk = decoder.encode(events, chunk, decoded)
                if not chunk:
                    continue
            if first:
                first = False
                on_first_chunk()
            yield chunk
        rest = framer.flush()  # an event the upstream never ended
        if decoder is not None and editor is not None:
            # The caller's parser drops an event that never ended, and the guards never
            # read it: it does not go out. What the guards still hold does.
            try:
                rest = decoder.encode(editor.close(), b"", 0)
            except SidecarError as err:
                guard_error = err
                error_type = "guard_blocked"
                rest = adapter.stream_error(err)
        elif decoder is not None and drop_usage and rest:
            events = decoder.decode(rest)
            _drop_usage_chunks(events)
            rest = decoder.encode(events, rest, len(events))
        if rest:
            yield rest
        resp.release()
        end_attempt(attempt, resp.status)
    except (GeneratorExit, asyncio.CancelledError):
        error_type = "cancelled"
        end_error(attempt, None, "cancelled by the caller")
        resp.close()
        raise
    except (Oversize, EventTooLarge) as over:
        # Cut at an event boundary (only whole events went out), so the error event
        # that ends the stream parses.
        bounded = oversize(upstream.name if upstream else "?", over.what, over.limit)
        error_type = bounded.code
        end_error(attempt, None, bounded.message)
        resp.close()
        yield adapter.stream_error(bounded)
    except (TimeoutError, OSError) as exc:
        failure = upstream_failure(upstream, exc, midstream=True)
        error_type = failure.kind.value
        end_error(attempt, exc)
        resp.close()
        yield adapter.stream_error(failure)
    finally:
        usage = decoder.usage if decoder is not None else observer.usage if observer else Usage()
        on_end(usage, error_type, guard_error)


def _drop_usage_chunks(events: list[StreamEvent]) -> None:
    """The usage-only chunk the sidecar asked for on the caller's behalf stays here."""
    for event in events:
        if event.data is not None and b'"usage"' in event.data and event.usage_only:
            event.drop()
