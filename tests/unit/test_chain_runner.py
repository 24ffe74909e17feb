"""The chain runner on fake stages: order, refusals, completion, spans and timings."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Span, StatusCode

from sidecar.bundle.snapshot import Snapshot
from sidecar.call import Call, Resource
from sidecar.chain.exchange import Exchange, Outcome
from sidecar.chain.runner import Chain, Spans
from sidecar.chain.stage import PlainReply, Stage
from sidecar.errors import ErrorKind, SidecarError

SNAPSHOT = cast(Snapshot, object())


class Recorder(Stage):
    """Notes each hook it runs in a shared journal; refuses or fails on request."""

    def __init__(
        self,
        name: str,
        journal: list[str],
        *,
        refuse: bool = False,
        fail_completion: bool = False,
        span: str = "",
        used: bool = True,
        edit: bytes | None = None,
        asynchronous: bool = False,
    ) -> None:
        self._name = self.name = name
        self.span_name = span
        self.journal = journal
        self.refuse = refuse
        self.fail_completion = fail_completion
        self.used = used
        self.edit = edit
        self.asynchronous = asynchronous

    def applies(self, snapshot: Snapshot) -> bool:
        self.journal.append(f"applies {self._name}")
        return self.used

    def request(self, ex: Exchange) -> Any:
        if self.asynchronous:
            return self._later()
        self._now()
        return None

    async def _later(self) -> None:
        await asyncio.sleep(0)
        self._now()

    def _now(self) -> None:
        self.journal.append(f"request {self._name}")
        if self.refuse:
            raise SidecarError(ErrorKind.FORBIDDEN, f"{self._name} says no", code="policy_denied")

    def describe(self, ex: Exchange, span: Span, error: SidecarError | None) -> None:
        span.set_attribute("test.stage", self._name)
        span.set_attribute("test.refused", error is not None)

    def reply(self, ex: Exchange, reply: PlainReply) -> None:
        self.journal.append(f"reply {self._name} {reply.body.decode()}")
        if self.edit is not None:
            reply.replace(self.edit)

    def complete(self, ex: Exchange, outcome: Outcome) -> None:
        self.journal.append(f"complete {self._name} {outcome.status}")
        if self.fail_completion:
            raise RuntimeError("books on fire")


class RequestOnly(Stage):
    name = "request-only"

    def __init__(self, journal: list[str]) -> None:
        self.journal = journal

    def request(self, ex: Exchange) -> None:
        self.journal.append("request request-only")


def exchange(span: Span | None = None) -> Exchange:
    ex = Exchange("d1", "r1", 0.0, span=span)
    ex.call = Call(surface="test", action="tool.call", resource=Resource("Tool", "search"))
    return ex


def untraced() -> Spans:
    provider = TracerProvider()
    return Spans(provider.get_tracer("t"), recording=False)


def traced() -> tuple[Spans, InMemorySpanExporter, TracerProvider]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Spans(provider.get_tracer("t"), recording=True), exporter, provider


async def test_request_hooks_run_in_declared_order() -> None:
    journal: list[str] = []
    stages = [
        Recorder("a", journal),
        RequestOnly(journal),
        Recorder("b", journal, asynchronous=True),
    ]
    chain = Chain(stages, SNAPSHOT, untraced())
    journal.clear()
    await chain.request(exchange())
    assert journal == ["request a", "request request-only", "request b"]


async def test_a_refusal_stops_the_chain_and_propagates_typed() -> None:
    journal: list[str] = []
    chain = Chain(
        [Recorder("a", journal), Recorder("deny", journal, refuse=True), Recorder("c", journal)],
        SNAPSHOT,
        untraced(),
    )
    journal.clear()
    with pytest.raises(SidecarError) as caught:
        await chain.request(exchange())
    assert caught.value.kind is ErrorKind.FORBIDDEN and caught.value.status == 403
    assert journal == ["request a", "request deny"]


async def test_stages_the_bundle_does_not_use_are_left_out_once_per_chain() -> None:
    journal: list[str] = []
    chain = Chain(
        [Recorder("a", journal), Recorder("unused", journal, used=False), Recorder("c", journal)],
        SNAPSHOT,
        untraced(),
    )
    assert journal == ["applies a", "applies unused", "applies c"]
    assert chain.names == ["a", "c"]
    for _ in range(3):
        await chain.request(exchange())
    assert "request unused" not in journal
    assert journal.count("applies a") == 1  # asked at build, never per call


async def test_every_completion_hook_runs_even_when_one_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    journal: list[str] = []
    chain = Chain(
        [Recorder("a", journal, fail_completion=True), Recorder("b", journal)],
        SNAPSHOT,
        untraced(),
    )
    journal.clear()
    chain.complete(exchange(), Outcome(429))
    assert journal == []  # after the reply is on the wire: the loop's next turn
    await asyncio.sleep(0)
    assert journal == ["complete a 429", "complete b 429"]
    assert "the a stage failed to complete call d1" in caplog.text


async def test_reply_hooks_see_one_body_and_later_hooks_see_the_edit() -> None:
    journal: list[str] = []
    chain = Chain(
        [
            Recorder("gate", journal),
            Recorder("scrub", journal, edit=b"clean"),
            Recorder("x", journal),
        ],
        SNAPSHOT,
        untraced(),
    )
    journal.clear()
    reply = PlainReply(b"raw")
    await chain.reply(exchange(), reply)
    assert journal == ["reply gate raw", "reply scrub raw", "reply x clean"]
    assert reply.changed and reply.body == b"clean"
    untouched = PlainReply(b"raw")
    await Chain([Recorder("gate", [])], SNAPSHOT, untraced()).reply(exchange(), untouched)
    assert not untouched.changed and untouched.body == b"raw"


async def test_the_runner_opens_one_span_per_stage_that_names_one_and_times_every_stage() -> None:
    spans, exporter, provider = traced()
    root = provider.get_tracer("t").start_span("call")
    journal: list[str] = []
    chain = Chain(
        [
            Recorder("identify", journal, span="identity.resolve"),
            Recorder("quiet", journal),
            Recorder("authorize", journal, span="policy.authorize", refuse=True),
        ],
        SNAPSHOT,
        spans,
    )
    ex = exchange(root)
    with pytest.raises(SidecarError):
        await chain.request(ex)
    root.end()
    finished = {s.name: s for s in exporter.get_finished_spans()}
    assert set(finished) == {"identity.resolve", "policy.authorize", "call"}
    ok, denied = finished["identity.resolve"], finished["policy.authorize"]
    assert ok.parent is not None and ok.parent.span_id == root.get_span_context().span_id
    assert ok.attributes == {"test.stage": "identify", "test.refused": False}
    assert ok.status.status_code is StatusCode.UNSET
    assert denied.attributes == {"test.stage": "authorize", "test.refused": True}
    assert denied.status.status_code is StatusCode.ERROR
    assert denied.status.description == "authorize says no"
    assert set(ex.timings) == {"identify", "quiet", "authorize"}
    assert all(t >= 0 for t in ex.timings.values())


async def test_without_recording_no_stage_span_is_opened() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    spans = Spans(provider.get_tracer("t"), recording=False)
    chain = Chain([Recorder("identify", [], span="identity.resolve")], SNAPSHOT, spans)
    await chain.request(exchange())
    with spans.around(exchange(), "guard.tool"):
        pass
    assert exporter.get_finished_spans() == ()
