"""Responses as the stages read them: stream events decoded once, a plain reply viewed once.

Each provider's decoder is checked on every kind of event it meets (text
delta, tool call started, tool-argument delta, usage, finish, opaque and
unparseable events); the encoder on giving back the upstream's own bytes for
every event no stage changed; and both on parsing an event or a reply at
most once, however many stages read it.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from sidecar.adapters.anthropic import ADAPTER as ANTHROPIC
from sidecar.adapters.openai import ADAPTER as OPENAI
from sidecar.events import StreamEvent

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
RESPONSES = "/v1/responses"
MESSAGES = "/v1/messages"
PACKAGE = Path(__file__).resolve().parents[2] / "sidecar"


def sse(data: Any, event: str = "") -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    body = data if isinstance(data, bytes) else orjson.dumps(data)
    return head + b"data: " + body + b"\n\n"


def chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "gpt-4o",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Every JSON parse made while the test runs, by what it parsed."""
    seen: list[bytes] = []
    real: Callable[[Any], Any] = orjson.loads

    def counting(data: Any) -> Any:
        seen.append(bytes(data))
        return real(data)

    monkeypatch.setattr(orjson, "loads", counting)
    yield seen


# --- what neither authz nor limits may import -------------------------------------------


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("package", ["authz", "limits"])
def test_stages_import_nothing_from_the_adapters(package: str) -> None:
    files = sorted((PACKAGE / package).rglob("*.py"))
    assert files
    for path in files:
        wrong = sorted(
            n
            for n in _imports(path)
            if n == "sidecar.adapters" or n.startswith("sidecar.adapters.")
        )
        assert not wrong, f"{path.relative_to(PACKAGE.parent)} imports {wrong}"


def test_the_neutral_event_types_import_no_adapter() -> None:
    assert not [n for n in _imports(PACKAGE / "events.py") if n.startswith("sidecar.adapters")]


# --- OpenAI chat and completions ---------------------------------------------------------


def test_chat_events_decoded() -> None:
    stream = b"".join(
        [
            sse(chunk({"role": "assistant", "content": "Hel"})),
            sse(chunk({"tool_calls": [{"index": 0, "function": {"name": "shell"}}]})),
            sse(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"c'}}]})),
            sse(chunk({"refusal": "no"}, index=1)),
            sse(chunk({}, "stop")),
            sse({"id": "c1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}),
            b": keep-alive\n\n",
            sse(b"{not json"),
            sse(b"[DONE]"),
        ]
    )
    decoder = OPENAI.stream_decoder(CHAT)
    text, tool, args, refusal, stop, usage, comment, broken, done = decoder.decode(stream)
    assert text.reading.texts == [("choice 0", "Hel")] and text.tools == []
    assert tool.tools == ["shell"] and tool.reading.args == []
    assert args.reading.args == [("tool call 0:0", '{"c')] and args.tools == []
    assert refusal.reading.texts == [("refusal 1", "no")]
    assert stop.reading.finish and not stop.reading.texts
    assert usage.usage_only and usage.reading.usage and not text.usage_only
    assert comment.data is None and comment.reading.opaque and comment.obj is None
    assert broken.obj is None and broken.reading.opaque and broken.tools == []
    assert done.reading.finish and done.obj is None
    assert (decoder.usage.input_tokens, decoder.usage.output_tokens) == (3, 4)
    assert decoder.usage.finish_reasons == ["stop"]
    assert text.reading.text_chars + args.reading.text_chars == 3 + 3


def test_completions_and_legacy_function_calls_decoded() -> None:
    legacy = sse(chunk({"function_call": {"name": "calc", "arguments": "{}"}}))
    text = sse({"id": "x", "choices": [{"index": 0, "text": "once", "finish_reason": None}]})
    call, words = OPENAI.stream_decoder(COMPLETIONS).decode(legacy + text)
    assert call.tools == ["calc"] and call.reading.args == [("tool call 0:fc", "{}")]
    assert words.reading.texts == [("choice 0", "once")]


# --- OpenAI Responses --------------------------------------------------------------------


def test_responses_events_decoded() -> None:
    item = {"type": "function_call", "name": "shell", "arguments": ""}
    completed = {
        "type": "response.completed",
        "response": {
            "id": "r1",
            "object": "response",
            "status": "completed",
            "output": [item],
            "usage": {"input_tokens": 2, "output_tokens": 5},
        },
    }
    events = [
        ("response.created", {"type": "response.created", "response": {"id": "r1"}}),
        (
            "response.output_text.delta",
            {"type": "response.output_text.delta", "output_index": 0, "delta": "Hi"},
        ),
        (
            "response.output_item.added",
            {"type": "response.output_item.added", "output_index": 1, "item": item},
        ),
        (
            "response.function_call_arguments.delta",
            {"type": "response.function_call_arguments.delta", "output_index": 1, "delta": "{}"},
        ),
        ("response.completed", completed),
    ]
    decoder = OPENAI.stream_decoder(RESPONSES)
    created, text, added, args, done = decoder.decode(b"".join(sse(d, n) for n, d in events))
    assert created.reading.opaque and created.tools == []
    assert text.name == "response.output_text.delta"
    assert text.reading.texts == [("output 0:0", "Hi")]
    assert added.tools == ["shell"]
    assert args.reading.args == [("args 1", "{}")]
    assert done.reading.finish and done.reading.usage and not done.usage_only
    assert done.tools == ["shell"]  # the whole response, repeated, names its calls too
    assert (decoder.usage.response_id, decoder.usage.output_tokens) == ("r1", 5)
    assert decoder.usage.finish_reasons == ["completed"]


# --- Anthropic ---------------------------------------------------------------------------


def test_anthropic_events_decoded() -> None:
    events = [
        (
            "message_start",
            {"type": "message_start", "message": {"id": "m1", "usage": {"input_tokens": 7}}},
        ),
        ("ping", {"type": "ping"}),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "a"},
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "name": "shell", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"x"'},
            },
        ),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use"},
                "usage": {"output_tokens": 9},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    stream = b"".join(sse(d, n) for n, d in events) + b"event: content_block_delta\ndata: {\n\n"
    decoder = ANTHROPIC.stream_decoder(MESSAGES)
    start, ping, text, tool, args, delta, stop, broken = decoder.decode(stream)
    assert start.reading.usage and not start.reading.finish
    assert ping.reading.opaque
    assert text.reading.texts == [("block 0", "a")] and text.tools == []
    assert tool.tools == ["shell"] and tool.reading.opaque
    assert args.reading.args == [("tool call 1", '{"x"')]
    assert delta.reading.usage and delta.reading.finish
    assert stop.reading.finish
    assert broken.obj is None and broken.reading.opaque
    assert not any(e.usage_only for e in (start, delta, stop))
    usage = decoder.usage
    assert (usage.response_id, usage.input_tokens, usage.output_tokens) == ("m1", 7, 9)
    assert usage.finish_reasons == ["tool_use"]


# --- encoding: the upstream's bytes unless a stage changed an event ----------------------


class _Upper:
    """A text filter that rewrites every piece (as a redaction would)."""

    def feed(self, channel: str, piece: str, *, tool: str | None = None) -> str:
        return piece.upper()

    def end(self, channel: str, *, tool: str | None = None) -> str:
        return ""


def test_unchanged_events_go_out_as_the_upstream_sent_them() -> None:
    odd = b'id: 7\r\ndata: {"id":"c1","choices":[]}\r\n\r\n'  # CRLF, an id line, no text
    kept = odd + b": ping\n\n"
    stream = kept + sse(chunk({"content": "abc"}))
    decoder = OPENAI.stream_decoder(CHAT)
    events = decoder.decode(stream)
    assert decoder.encode(events, stream, len(events)) is stream  # nothing changed: no copy
    editor = OPENAI.stream_editor(CHAT, _Upper())
    assert editor is not None
    out = decoder.encode(editor.feed(events), stream, len(events))
    assert out.startswith(kept)  # byte for byte
    edited = orjson.loads(out[len(kept) :].removeprefix(b"data: "))
    assert edited["choices"][0]["delta"] == {"content": "ABC"}


def test_a_dropped_event_leaves_the_others_alone() -> None:
    usage = sse({"id": "c1", "choices": [], "usage": {"prompt_tokens": 1}})
    stream = sse(chunk({"content": "x"})) + usage + sse(b"[DONE]")
    decoder = OPENAI.stream_decoder(CHAT)
    events = decoder.decode(stream)
    for event in events:
        if event.usage_only:
            event.drop()
    assert decoder.encode(events, stream, len(events)) == stream.replace(usage, b"")


def test_an_added_event_is_encoded_with_its_name() -> None:
    added = StreamEvent.added({"type": "content_block_delta", "index": 0}, "content_block_delta")
    decoder = ANTHROPIC.stream_decoder(MESSAGES)
    assert decoder.encode([added], b"", 0) == (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0}\n\n'
    )


# --- parsed once -------------------------------------------------------------------------


def test_a_stream_event_is_parsed_once_by_every_stage(parses: list[bytes]) -> None:
    stream = b"".join(
        [
            sse(chunk({"role": "assistant", "content": "one"})),
            sse(chunk({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": ""}}]})),
            sse(chunk({}, "stop")),
            sse({"id": "c1", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}),
            sse(b"[DONE]"),
        ]
    )
    decoder = OPENAI.stream_decoder(CHAT)  # observes usage as it decodes
    events = decoder.decode(stream)
    editor = OPENAI.stream_editor(CHAT, _Upper())
    assert editor is not None
    for event in events:  # the gate, the budget, the usage drop
        assert isinstance(event.tools, list)
        assert event.reading.text_chars >= 0
        assert isinstance(event.usage_only, bool)
    editor.feed(events)
    editor.close()
    assert sorted(parses) == sorted({e.data for e in events if e.data is not None})


def test_events_no_stage_reads_are_not_parsed(parses: list[bytes]) -> None:
    stream = sse(chunk({"content": "a"})) * 3
    events = OPENAI.stream_decoder(CHAT).decode(stream)
    assert len(parses) == 1  # the first chunk, for the response's id and model
    assert [e.tools for e in events] == [[], [], []]  # no tool marker: nothing to parse
    assert len(parses) == 1


def test_a_plain_reply_is_parsed_once(parses: list[bytes]) -> None:
    reply = {
        "id": "c1",
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "content": "sure",
                    "tool_calls": [{"id": "t", "function": {"name": "calc", "arguments": "{}"}}],
                },
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 6},
    }
    raw = orjson.dumps(reply)
    view = OPENAI.reply_view(CHAT, raw)
    assert view.tools == ["calc"]  # the tool gate
    texts, calls = view.texts()  # the output guards
    assert [t.text for t in texts] == ["sure"] and [(n, t.text) for n, t in calls] == [
        ("calc", "{}")
    ]
    assert (view.usage.input_tokens, view.usage.output_tokens) == (5, 6)  # accounting
    assert view.text_chars == len("sure") + len("{}")
    assert view.encode() is raw  # no stage edited it
    assert len(parses) == 1


def test_a_plain_reply_nobody_inspects_is_never_parsed(parses: list[bytes]) -> None:
    raw = orjson.dumps({"choices": [{"message": {"content": "hi"}}]})
    view = ANTHROPIC.reply_view(MESSAGES, raw)
    assert view.tools == []  # no tool marker in its bytes
    assert view.encode() is raw
    assert parses == []


def test_an_edited_reply_is_serialized_once_more() -> None:
    raw = orjson.dumps({"content": [{"type": "text", "text": "secret"}], "stop_reason": "x"})
    view = ANTHROPIC.reply_view(MESSAGES, raw)
    texts, _ = view.texts()
    texts[0].replace("[REDACTED]")
    view.edit()
    assert orjson.loads(view.encode())["content"][0]["text"] == "[REDACTED]"
    assert view.encode() is view.encode()  # encoded once, however many ask
    assert view.text_chars == len("secret")  # what the model generated
    assert view.usage.finish_reasons == ["x"]


def test_an_unparseable_reply_reads_as_empty() -> None:
    view = OPENAI.reply_view(CHAT, b"tool_calls but not json")
    assert view.body is None and view.tools == [] and view.texts() == ([], [])
    assert view.usage.input_tokens is None and view.text_chars == 0
    assert view.encode() == b"tool_calls but not json"
