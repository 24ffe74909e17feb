"""What the stage unit tests share: a compiled bundle, a call on it, telemetry kept in memory.

Each stage is driven alone, on a `Generation` compiled from a real bundle
directory, so a test sees exactly what the stage decides on the snapshot a
served call would hold, with no listener, upstream or other stage around it.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sidecar.adapters import anthropic, openai
from sidecar.bundle.compile import load_snapshot
from sidecar.bundle.store import Generation
from sidecar.call import Call, Resource, Text, ToolCall
from sidecar.chain.exchange import Exchange
from sidecar.chain.runner import Chain, Spans
from sidecar.chain.stage import Stage
from sidecar.identity.principal import PodIdentity, Principal
from sidecar.names import fold
from sidecar.telemetry.setup import Telemetry, setup_telemetry
from sidecar.telemetry.tracing import PropagatingTracer

POD = PodIdentity("agent-7", "acme")
AGENT = Principal("agent-7", "acme", "agent-7", roles=frozenset({"agent"}))
MISSING_KEY_VAR = "SIDECAR_STAGE_TEST_UNSET_KEY"  # never set: the upstream lacks its credential


def base_bundle(**sections: Any) -> dict[str, Any]:
    """A bundle whose pod identity may chat with `mock-*` and call `search` / `fetch`."""
    doc: dict[str, Any] = {
        "apiVersion": "sidecar/v1",
        "revision": "stages-1",
        "upstreams": {
            "mock": {"builtin": "mock", "models": ["mock-echo"]},
            "openai": {
                "base_url": "https://api.openai.example",
                "api_key": {"env": MISSING_KEY_VAR},
            },
        },
        "routes": [
            {"name": "mock-route", "match": {"model": "mock-*"}, "upstream": "mock"},
            {"name": "gpt-route", "match": {"model": "gpt-*"}, "upstream": "openai"},
        ],
        "roles": {
            "agent": [
                {"actions": ["llm.*"], "models": ["mock-*", "gpt-*"]},
                {"actions": ["tool.call"], "tools": ["search", "fetch"]},
            ]
        },
    }
    doc.update(sections)
    return doc


_dirs = itertools.count()


def compile_bundle(
    tmp: Path, doc: dict[str, Any], files: dict[str, str] | None = None
) -> Generation:
    """Write `doc` (and its policy files) under `tmp` and compile it as `sidecar run` would."""
    root = tmp / f"bundle-{next(_dirs)}"
    root.mkdir(parents=True)
    (root / "bundle.yaml").write_text(yaml.safe_dump(doc))
    for name, text in (files or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return Generation(load_snapshot(root), transports={})


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def chat(model: str = "mock-echo", text: str = "hello", **fields: Any) -> Call:
    """An OpenAI chat call, parsed by the OpenAI adapter from its wire bytes."""
    body = {"model": model, "messages": [{"role": "user", "content": text}], **fields}
    return openai.ADAPTER.parse("/v1/chat/completions", orjson.dumps(body))


def messages(model: str = "mock-echo", text: str = "hello", **fields: Any) -> Call:
    """An Anthropic messages call, parsed by the Anthropic adapter."""
    body = {
        "model": model,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": text}],
        **fields,
    }
    return anthropic.ADAPTER.parse("/v1/messages", orjson.dumps(body))


def function(name: str) -> dict[str, Any]:
    """An OpenAI chat tool definition."""
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


def tool_call(name: str, arguments: dict[str, Any], **attributes: Any) -> Call:
    """A `tool.call` as a tool surface builds it: no body, the call's arguments to guard."""
    args = orjson.dumps(arguments).decode()
    proposed = ToolCall(name, args, id="call-1")
    return Call(
        surface="fake-tools",
        action="tool.call",
        resource=Resource("Tool", fold(name)),
        operation="execute_tool",
        attributes=dict(attributes),
        extract_texts=lambda body: [Text("tool_call", args)],
        extract_tools=lambda body: ([name], [proposed]),
    )


def exchange(gen: Generation, call: Call, decision_id: str = "decision-1") -> Exchange:
    """The exchange a surface hands its chain: the call, its codec and the generation."""
    return Exchange(decision_id, gen.snapshot.revision, 0.0, gen=gen, call=call, codec=call.codec)


def chat_reply(text: str = "hi", tools: Sequence[str] = ()) -> bytes:
    """A plain OpenAI chat completion, proposing calls to `tools` when given."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tools:
        message["tool_calls"] = [
            {
                "id": f"call-{i}",
                "type": "function",
                "function": {"name": name, "arguments": "{}"},
            }
            for i, name in enumerate(tools)
        ]
    return orjson.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": "mock-echo",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }
    )


@dataclass
class Recorded:
    """Telemetry as the sidecar sets it up, with spans kept in memory."""

    telemetry: Telemetry
    exporter: InMemorySpanExporter

    @property
    def spans(self) -> Spans:
        return Spans(self.telemetry.tracer, self.telemetry.recording)

    def chain(self, gen: Generation, *stages: Stage) -> Chain:
        """A chain of just these stages, as the bundle uses them."""
        return Chain(stages, gen.snapshot, self.spans)

    def root(self, ex: Exchange, name: str = "chat mock-echo") -> None:
        """Open the call's span, as the surface does before it runs the chain."""
        ex.span = self.telemetry.tracer.start_span(name)

    def finished(self, name: str) -> ReadableSpan:
        [span] = [s for s in self.exporter.get_finished_spans() if s.name == name]
        return span

    def attributes(self, name: str) -> dict[str, Any]:
        return dict(self.finished(name).attributes or {})

    def metrics(self) -> str:
        return self.telemetry.prometheus_text().decode()


def recorded() -> Recorded:
    exporter = InMemorySpanExporter()
    telemetry = setup_telemetry("none", span_processors=[SimpleSpanProcessor(exporter)])
    return Recorded(telemetry, exporter)


def quiet_spans() -> Spans:
    """Spans that record nothing, as a sidecar without an exporter runs them."""
    return Spans(PropagatingTracer(), recording=False)
