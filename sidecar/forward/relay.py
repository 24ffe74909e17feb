"""The stream relay: upstream bytes through the response stages to the caller.

Without a response stage's hook (no tool gate, no output guard, no usage
chunk to drop, no budget charging the text) the upstream's own bytes go out,
only held back to whole events, and a cheap observer learns usage. With
hooks, each run of whole events is decoded once by the adapter, each hook in
the chain's order reads (and may mark) the decoded events, and the adapter
encodes them again: the original bytes for every event no hook changed. A
forbidden call or a finding is acted on before any of its bytes go out; a
block ends the stream with a provider-shaped error event. What the call cost and how it ended go to
`on_end`, whatever way the stream stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from opentelemetry.trace import Span

from sidecar.adapters.base import Adapter
from sidecar.adapters.sse import EventFramer, EventTooLarge
from sidecar.bounds import ResponseBounds, oversize
from sidecar.bundle.snapshot import UpstreamSpec
from sidecar.call import Call, Usage
from sidecar.chain.stage import StreamHook
from sidecar.errors import SidecarError
from sidecar.forward.attempt import end_attempt, end_error
from sidecar.forward.failures import upstream_failure
from sidecar.upstream.base import UpstreamResponse


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
    hooks_for: Callable[[bool], list[StreamHook]],
    on_start: Callable[[], None],
    on_first_chunk: Callable[[], None],
    on_end: Callable[[Usage, str | None], None],
) -> AsyncIterator[bytes]:
    """Pass each run of whole events on as it arrives, learning usage on the way.

    `hooks_for(ok)` gives the response stages' hooks for a stream of this status
    (asked when the caller first asks for a chunk: a stream never asked for has
    no books to close); `on_end` gets the usage seen and the error type (None
    for a success).
    """
    on_start()
    first = True
    error_type: str | None = None if resp.status < 400 else str(resp.status)
    hooks = hooks_for(resp.status < 300)
    decoder = adapter.stream_decoder(call.path) if hooks else None
    observer = adapter.stream_observer(call.path) if decoder is None else None
    max_event, max_total = bounds.max_event_bytes, bounds.max_response_bytes
    # Only whole events go out: a stream that breaks mid-event then ends with an error
    # event the SDK can still read, and a stage acts on an event before any of it leaves.
    framer = EventFramer(max_event)
    refusal: SidecarError | None = None
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
            if decoder is not None:
                events = decoder.decode(chunk)  # usage is learnt here, on the same parse
                decoded = len(events)
                hook = None
                try:
                    for hook in hooks:
                        events = hook.events(events)
                except SidecarError as err:
                    refusal = err
                    error_type = hook.error_type if hook is not None else err.code
                    end_error(attempt, None, err.message)
                    resp.close()
                    yield adapter.stream_error(err)
                    return
                chunk = decoder.encode(events, chunk, decoded)
                if not chunk:
                    continue
            if first:
                first = False
                on_first_chunk()
            yield chunk
        rest = framer.flush()  # an event the upstream never ended
        if decoder is not None:
            events = decoder.decode(rest) if rest else []
            decoded = len(events)
            hook = None
            try:
                for hook in hooks:
                    events = hook.close(events)
                rest = decoder.encode(events, rest, decoded)
            except SidecarError as err:
                refusal = err
                error_type = hook.error_type if hook is not None else err.code
                rest = adapter.stream_error(err)
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
        for hook in hooks:
            hook.end(refusal)
        usage = decoder.usage if decoder is not None else observer.usage if observer else Usage()
        on_end(usage, error_type)
