"""What the stream relay costs per streamed reply, with and without response stages.

Why: a guarded stream's events used to be read once per stage (the tool gate
searched and parsed them, the output guards parsed them again, the budget
counter scanned them with a regular expression, the usage observer parsed
some of them a third time); now the adapter decodes each event once and the
stages share it. This runs `relay()` in process over a 200-event chat stream
(text deltas a token or two long, one tool call, a finish, the usage-only
chunk, `[DONE]`), one event per network chunk, from a fake upstream:

- no stage: the upstream's bytes held back to whole events, plus the usage
  observer (the path most calls take, which must stay as cheap);
- tool gate only, budget only;
- tool gate + output guards (the default bundle's PII redaction, with three
  e-mail addresses to redact) + token budget + the usage chunk dropped.

and, for a plain (non-streamed) chat reply of about 1.5 KB with one tool call,
what the pipeline does with it after the upstream answers: the tool gate, the
output guards (same PII guard), and reading usage for accounting — with
nothing to redact, and with one e-mail address to redact (the reply is then
encoded again).

`--repo DIR` runs another checkout's `sidecar` package (before and after
figures in one machine state), one whose relay takes the chain's stream hooks.

    .venv/bin/python bench/relay_bench.py [--runs 400] [--repo ../other-checkout]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import yaml


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    return parser.parse_args()


ARGS = _args() if __name__ == "__main__" else None
sys.path.insert(0, str((ARGS.repo if ARGS else Path(__file__).resolve().parents[1]).resolve()))

from opentelemetry import trace  # noqa: E402

from sidecar.adapters.openai import ADAPTER as OPENAI  # noqa: E402
from sidecar.authz.context import CallContext  # noqa: E402
from sidecar.authz.tool_stages import ToolCallGate  # noqa: E402
from sidecar.authz.tools import ToolGate  # noqa: E402
from sidecar.bounds import ResponseBounds  # noqa: E402
from sidecar.bundle.compile import load_snapshot  # noqa: E402
from sidecar.bundle.store import Generation  # noqa: E402
from sidecar.call import Call, Usage  # noqa: E402
from sidecar.chain.exchange import Exchange  # noqa: E402
from sidecar.chain.runner import Spans  # noqa: E402
from sidecar.chain.stage import StreamHook  # noqa: E402
from sidecar.forward.relay import relay  # noqa: E402
from sidecar.guards.config import compile_guards  # noqa: E402
from sidecar.guards.stage import Record, Subject, check_output  # noqa: E402
from sidecar.guards.stages import OutputGuards  # noqa: E402
from sidecar.identity.principal import Principal  # noqa: E402
from sidecar.limits.limiter import Admission, LimitStores  # noqa: E402
from sidecar.limits.stage import Limits  # noqa: E402
from sidecar.telemetry.setup import setup_telemetry  # noqa: E402

PATH = "/v1/chat/completions"
PRINCIPAL = Principal("bot", "acme", "bot", roles=frozenset({"analyst"}), via="pod")
SUBJECT = Subject("bench", "acme", "gpt-4o", frozenset({"analyst"}))
GUARDS: dict[str, Any] = {"output": [{"id": "pii-in-reply", "kind": "pii", "action": "redact"}]}
WORDS = (
    *("The", "northern", "region", "saw", "delays", "of", "four", "to", "six", "days,"),
    *("mostly", "at", "the", "port;", "the", "new", "supplier", "contracts", "start"),
    *("next", "quarter", "and", "the", "budget", "holds."),
)


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    event = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(event) + b"\n\n"


def stream(events: int) -> list[bytes]:
    """`events` events, one per network chunk, as OpenAI sends a chat stream."""
    out = [_chunk({"role": "assistant", "content": ""})]
    texts = events - 7
    for i in range(texts):
        word = WORDS[i % len(WORDS)]
        if i in (texts // 4, texts // 2, 3 * texts // 4):
            word = "ops.lead@example.com"  # found and redacted by the output guard
        out.append(_chunk({"content": " " + word}))
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "search"}}
    out.append(_chunk({"tool_calls": [{**call, "function": {"name": "search", "arguments": ""}}]}))
    out.append(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"q": "'}}]}))
    out.append(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'totals"}'}}]}))
    out.append(_chunk({}, "tool_calls"))
    usage = {"prompt_tokens": 40, "completion_tokens": events, "total_tokens": 40 + events}
    out.append(b"data: " + orjson.dumps({"id": "chatcmpl-1", "choices": [], "usage": usage}))
    out[-1] += b"\n\n"
    out.append(b"data: [DONE]\n\n")
    return out


class FakeResponse:
    status = 200
    headers: dict[str, str] = {}

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def read(self) -> bytes:
        return b"".join(self._chunks)

    async def chunks(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


def _noop(*_: object) -> None:
    pass


def _call() -> Call:
    body = {
        "model": "gpt-4o",
        "stream": True,
        "messages": [{"role": "user", "content": "find the report"}],
        "tools": [{"type": "function", "function": {"name": "search"}}],
    }
    return OPENAI.parse(PATH, orjson.dumps(body))


def write_bundle(root: Path) -> None:
    doc = {
        "apiVersion": "sidecar/v1",
        "revision": "relay-bench",
        "identity": {"pod": {"roles": ["analyst"]}},
        "roles": {
            "analyst": [
                {"actions": ["llm.*"]},
                {"actions": ["tool.call"], "tools": ["search"]},
            ]
        },
        "guards": GUARDS,
    }
    (root / "bundle.yaml").write_text(yaml.safe_dump(doc))


Hooks = Callable[[bool], list[StreamHook]]


async def relay_once(call: Call, chunks: list[bytes], hooks: Hooks) -> int:
    sent = 0
    async for piece in relay(
        OPENAI,
        call,
        None,
        FakeResponse(chunks),  # type: ignore[arg-type]
        trace.INVALID_SPAN,
        ResponseBounds(),
        hooks,
        _noop,
        _noop,
        _check,
    ):
        sent += len(piece)
    return sent


def _check(usage: Usage, error: str | None) -> None:
    assert error is None and usage.output_tokens is not None, (usage, error)


def reply(email: bool) -> bytes:
    words = " ".join(WORDS[i % len(WORDS)] for i in range(220))
    if email:
        words += " Write to ops.lead@example.com."
    call = {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": "{}"}}
    message = {"role": "assistant", "content": words, "tool_calls": [call]}
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 300, "total_tokens": 340},
    }
    return orjson.dumps(body)


async def plain_once(gate: ToolGate, gs: Any, raw: bytes) -> tuple[bytes, Usage]:
    """The plain path as the pipeline runs it, in whichever checkout is loaded."""
    record = Record()
    if hasattr(OPENAI, "reply_view"):  # one view of the reply, shared
        view = OPENAI.reply_view(PATH, raw)
        assert not gate.forbidden(view.tools)
        texts, calls = view.texts()
        if await check_output(gs, texts, calls, SUBJECT, record):
            view.edit()
        view.scrub()
        out = view.encode()
        return out, view.usage
    from sidecar.authz.tools import response_violations  # type: ignore[attr-defined]

    assert not response_violations(OPENAI, PATH, raw, gate)
    obj = orjson.loads(raw)
    texts, calls = OPENAI.reply_texts(PATH, obj)
    changed = await check_output(gs, texts, calls, SUBJECT, record)
    changed = OPENAI.scrub(PATH, obj) or changed
    out = orjson.dumps(obj) if changed else raw
    return out, OPENAI.usage_from_body(PATH, out)


def main() -> int:
    assert ARGS is not None
    with tempfile.TemporaryDirectory() as tmp:
        write_bundle(Path(tmp))
        snapshot = load_snapshot(tmp)
    gs, problems = compile_guards(GUARDS, b"bench")
    assert not problems, problems
    call = _call()
    chunks = stream(ARGS.events)

    def gate() -> ToolGate:
        return ToolGate(snapshot.authorizer, PRINCIPAL, CallContext(call, PRINCIPAL))

    telemetry = setup_telemetry("none")
    spans = Spans(telemetry.tracer, recording=False)
    stages = (
        Limits(LimitStores(), telemetry.instruments),
        ToolCallGate(),
        OutputGuards(spans),
    )
    gen = Generation(snapshot, transports={})

    def hooks(gated: bool = False, guarded: bool = False, spending: bool = False) -> Hooks:
        """The chain's stream hooks, as its stages make them for a call in this state."""
        ex = Exchange("bench", snapshot.revision, 0.0, gen=gen, call=call, codec=OPENAI)
        ex.principal = PRINCIPAL
        ex.tool_gate = gate() if gated else None
        ex.admission = Admission(member="bench", spends=True) if spending else None
        ex.drop_usage_chunk = spending and guarded
        used = [s for s in stages if guarded or not isinstance(s, OutputGuards)]

        def make(ok: bool) -> list[StreamHook]:
            return [h for h in (s.stream(ex, ok) for s in used) if h is not None]

        return make

    scenarios: list[tuple[str, Callable[[], Hooks]]] = [
        ("no stage (bytes + usage observer)", lambda: hooks()),
        ("tool gate", lambda: hooks(gated=True)),
        ("token budget", lambda: hooks(spending=True)),
        (
            "tool gate + output guards + budget + usage chunk dropped",
            lambda: hooks(gated=True, guarded=True, spending=True),
        ),
    ]
    loop = asyncio.new_event_loop()
    print(f"{len(chunks)} events, {sum(map(len, chunks))} bytes; code from {ARGS.repo}")
    print("| stages | min µs / stream | p50 µs / stream | p99 µs / stream | µs / event (p50) |")
    print("|---|---:|---:|---:|---:|")
    for label, make in scenarios:
        for _ in range(20):
            loop.run_until_complete(relay_once(call, chunks, make()))
        samples: list[float] = []
        for _ in range(ARGS.runs):
            made = make()
            t0 = time.perf_counter()
            loop.run_until_complete(relay_once(call, chunks, made))
            samples.append((time.perf_counter() - t0) * 1e6)
        ordered = sorted(samples)
        p50 = statistics.median(ordered)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        print(f"| {label} | {ordered[0]:.0f} | {p50:.0f} | {p99:.0f} | {p50 / len(chunks):.2f} |")
    print()
    print("| plain reply: gate + output guards + usage | min µs | p50 µs | p99 µs |")
    print("|---|---:|---:|---:|")
    for label, raw in (("nothing to redact", reply(False)), ("one address redacted", reply(True))):
        samples = []
        for i in range(ARGS.runs * 5 + 50):
            t0 = time.perf_counter()
            out, usage = loop.run_until_complete(plain_once(gate(), gs, raw))
            if i >= 50:
                samples.append((time.perf_counter() - t0) * 1e6)
        assert usage.output_tokens == 300 and (out is raw) == (b"ops.lead" not in raw)
        ordered = sorted(samples)
        p50, p99 = statistics.median(ordered), ordered[int(len(ordered) * 0.99)]
        print(f"| {label} | {ordered[0]:.0f} | {p50:.0f} | {p99:.0f} |")
    loop.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
