"""The chain runner: stages in their declared order, a span and a timing for each.

A `Chain` is built once per bundle generation from a declaration (the
stages a surface needs, in order), keeping only the stages the bundle uses
and, for each hook, only the stages that implement it. Running it is a loop
over those lists: no stage opens a span or reads a clock itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from sidecar.bundle.snapshot import Snapshot
from sidecar.chain.exchange import Exchange, Outcome
from sidecar.chain.stage import PlainReply, Stage, StreamHook
from sidecar.errors import SidecarError

log = logging.getLogger("sidecar.chain")
Describe = Callable[[Span, SidecarError | None], None]


class Spans:
    """Opens the spans of a call's stages under the call's span, when spans record."""

    def __init__(self, tracer: Tracer, recording: bool) -> None:
        self.tracer = tracer
        self.recording = recording

    def open(self, ex: Exchange, name: str) -> Span:
        parent = trace.set_span_in_context(ex.span) if ex.span is not None else None
        return self.tracer.start_span(name, context=parent)

    def close(
        self, span: Span, error: SidecarError | None, describe: Describe | None = None
    ) -> None:
        if self.recording:
            if describe is not None:
                describe(span, error)
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, error.message))
        span.end()

    @contextlib.contextmanager
    def around(self, ex: Exchange, name: str, describe: Describe | None = None) -> Iterator[None]:
        """A span around a block: for a stage's own sub-steps (a guard family, say)."""
        if not self.recording:
            yield
            return
        span = self.open(ex, name)
        try:
            yield
        except SidecarError as err:
            self.close(span, err, describe)
            raise
        except BaseException:
            span.end()
            raise
        self.close(span, None, describe)


def _overrides(stage: Stage, hook: str) -> bool:
    return getattr(type(stage), hook) is not getattr(Stage, hook)


class Chain:
    """One surface's declared stages, as one bundle generation uses them."""

    def __init__(self, declared: Sequence[Stage], snapshot: Snapshot, spans: Spans) -> None:
        used = [s for s in declared if s.applies(snapshot)]
        self.stages = tuple(used)
        self.spans = spans
        self._request = tuple(s for s in used if _overrides(s, "request"))
        self._reply = tuple(s for s in used if _overrides(s, "reply"))
        self._complete = tuple(s for s in used if _overrides(s, "complete"))
        self._stream = tuple(s for s in used if _overrides(s, "stream"))

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    async def request(self, ex: Exchange) -> None:
        """Every request hook in order; the first refusal propagates."""
        spans = self.spans
        for stage in self._request:
            span = spans.open(ex, stage.span_name) if stage.span_name and spans.recording else None
            started = time.perf_counter()
            try:
                pending = stage.request(ex)
                if pending is not None:
                    await pending
            except SidecarError as err:
                ex.timings[stage.name] = time.perf_counter() - started
                if span is not None:
                    spans.close(span, err, _describer(stage, ex))
                raise
            except BaseException:
                if span is not None:
                    span.end()
                raise
            ex.timings[stage.name] = time.perf_counter() - started
            if span is not None:
                spans.close(span, None, _describer(stage, ex))

    async def reply(self, ex: Exchange, reply: PlainReply) -> None:
        """Every reply hook in order over one plain reply."""
        for stage in self._reply:
            pending = stage.reply(ex, reply)
            if pending is not None:
                await pending

    def stream(self, ex: Exchange, ok: bool) -> list[StreamHook]:
        """The hooks that read this call's streamed reply, in declared order."""
        hooks = []
        for stage in self._stream:
            hook = stage.stream(ex, ok)
            if hook is not None:
                hooks.append(hook)
        return hooks

    def complete(self, ex: Exchange, outcome: Outcome) -> None:
        """Run the completion hooks once the reply is on the wire: the loop's next turn.

        Settlement, metrics, the decision log and the span's end need nothing the
        caller waits for.
        """
        outcome.elapsed = time.perf_counter() - ex.started
        asyncio.get_running_loop().call_soon(self.complete_now, ex, outcome)

    def complete_now(self, ex: Exchange, outcome: Outcome) -> None:
        if outcome.body is not None:
            outcome.usage = outcome.body.usage  # a plain reply: what it reports of itself
        for stage in self._complete:
            try:
                stage.complete(ex, outcome)
            except Exception:  # one stage's fault must not skip the others' books
                log.exception("the %s stage failed to complete call %s", stage.name, ex.decision_id)


def _describer(stage: Stage, ex: Exchange) -> Describe:
    return lambda span, error: stage.describe(ex, span, error)
