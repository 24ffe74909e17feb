"""The stream relay: upstream bytes through the response stages to the caller.

Without a response stage (no tool gate, no output guard, no usage chunk to
drop) the upstream's own bytes go out, only held back to whole events. With
one, chunks are cut at event boundaries first, so a forbidden call or a
finding is acted on before any of its bytes go out; a block ends the stream
with a provider-shaped error event. What the call cost and how it ended go
to `on_end`, whatever way the stream stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from opentelemetry.trace import Span

from sidecar.adapters.base import Adapter
from sidecar.adapters.output import StreamEditor
from sidecar.adapters.sse import EventFramer, EventTooLarge
from sidecar.authz.tools import ToolGate, stream_violations
from sidecar.bounds import ResponseBounds, oversize
from sidecar.bundle.snapshot import UpstreamSpec
from sidecar.call import Call, Usage
from sidecar.errors import SidecarError
from sidecar.forward.attempt import end_attempt, end_error
from sidecar.forward.failures import upstream_failure
from sidecar.limits.limiter import Admission
from sidecar.limits.streams import streamed_text_chars, without_usage_chunks
from sidecar.upstream.base import UpstreamResponse


@dataclass(slots=True)
class ResponseStages:
    """The stages a streamed response passes, as the call's earlier stages left them."""

    gate: ToolGate | None = None  # the tool gate, when the request offered tools
    editor: StreamEditor | None = None  # the output guards, when the bundle has them
    drop_usage: bool = False  # usage was asked for upstream on the sidecar's behalf
    spend: Admission | None = None  # a limit that charges the text produced


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
    """Pass each chunk on as it arrives, learning usage on the way.

    `blocked` words the error for forbidden tool calls; `on_start` runs when the
    caller first asks for a chunk (a stream never asked for has no books to
    close); `on_end` gets the usage seen, the error type (None for a success)
    and the output guards' error.
    """
    on_start()
    observer = adapter.stream_observer(call.path)
    first = True
    error_type: str | None = None if resp.status < 400 else str(resp.status)
    ok = resp.status < 300
    gate = stages.gate if ok else None
    editor = stages.editor
    spend = stages.spend
    drop_usage = stages.drop_usage and ok
    aligned = gate is not None or editor is not None or drop_usage
    max_event, max_total = bounds.max_event_bytes, bounds.max_response_bytes
    aligner = EventFramer(max_event) if aligned else None
    held = EventFramer(max_event)
    guard_error: SidecarError | None = None
    received = 0  # bytes from the upstream
    try:
        async for chunk in resp.chunks():
            received += len(chunk)
            if received > max_total:
                raise Oversize("a response", max_total)
            observer.feed(chunk)
            if aligner is None:
                # Pass whole events only (one search per chunk): a stream that breaks
                # mid-event then ends with an error event the SDK can still read.
                chunk = held.feed(chunk)
                if not chunk:
                    continue
            else:
                chunk = aligner.feed(chunk)
                violations = stream_violations(adapter, call.path, chunk, gate) if gate else []
                if violations:
                    err = blocked(violations)
                    error_type = "tool_call_blocked"
                    end_error(attempt, None, err.message)
                    resp.close()
                    yield adapter.stream_error(err)
                    return
                if editor is not None and chunk:
                    try:
                        chunk = editor.feed(chunk)
                    except SidecarError as err:
                        guard_error = err
                        error_type = "guard_blocked"
                        end_error(attempt, None, err.message)
                        resp.close()
                        yield adapter.stream_error(err)
                        return
                if drop_usage and chunk:
                    chunk = without_usage_chunks(chunk)
                if not chunk:
                    continue
            if spend is not None:
                spend.produced_chars += streamed_text_chars(chunk)
            if first:
                first = False
                on_first_chunk()
            yield chunk
        if held.size:
            yield held.flush()  # the upstream ended without closing its last event
        if aligner is not None:
            rest = aligner.flush()
            if editor is not None:
                try:
                    rest = editor.feed(rest) + editor.close()
                except SidecarError as err:
                    guard_error = err
                    error_type = "guard_blocked"
                    rest = adapter.stream_error(err)
            if drop_usage and rest:
                rest = without_usage_chunks(rest)
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
        on_end(observer.usage, error_type, guard_error)
