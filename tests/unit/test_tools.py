"""Tool governance, sans-IO: rewriting requests, finding proposed calls, aligning streams."""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.adapters.anthropic import ADAPTER as ANTHROPIC
from sidecar.adapters.openai import ADAPTER as OPENAI
from sidecar.adapters.sse import EventFramer


def test_openai_chat_tools_removed_with_their_choice() -> None:
    body: dict[str, Any] = {
        "tools": [
            {"type": "function", "function": {"name": "search"}},
            {"type": "function", "function": {"name": "shell"}},
        ],
        "tool_choice": {"type": "function", "function": {"name": "shell"}},
    }
    OPENAI.without_tools("/v1/chat/completions", body, {"shell"})
    assert body == {
        "tools": [{"type": "function", "function": {"name": "search"}}],
        "tool_choice": "auto",
    }
    OPENAI.without_tools("/v1/chat/completions", body, {"search"})
    assert body == {}  # no tools left: no tool_choice either


def test_responses_and_anthropic_tools_removed() -> None:
    body: dict[str, Any] = {
        "tools": [{"type": "function", "name": "shell"}, {"type": "web_search"}],
        "parallel_tool_calls": True,
    }
    OPENAI.without_tools("/v1/responses", body, {"shell", "web_search"})
    assert body == {}
    abody: dict[str, Any] = {
        "tools": [{"name": "shell"}, {"name": "calc"}],
        "tool_choice": {"type": "tool", "name": "shell"},
    }
    ANTHROPIC.without_tools("/v1/messages", abody, {"shell"})
    assert abody == {"tools": [{"name": "calc"}], "tool_choice": {"type": "auto"}}


def test_proposed_tools_in_complete_responses() -> None:
    chat = {"choices": [{"message": {"tool_calls": [{"function": {"name": "shell"}}]}}]}
    assert OPENAI.proposed_tools("/v1/chat/completions", chat) == ["shell"]
    resp = {"output": [{"type": "message"}, {"type": "function_call", "name": "shell"}]}
    assert OPENAI.proposed_tools("/v1/responses", resp) == ["shell"]
    msg = {"content": [{"type": "text", "text": "hi"}, {"type": "tool_use", "name": "shell"}]}
    assert ANTHROPIC.proposed_tools("/v1/messages", msg) == ["shell"]


def test_event_tools_only_where_a_call_starts() -> None:
    start = {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "shell"}}]}}]}
    more = {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]}}]}
    assert OPENAI.event_tools("/v1/chat/completions", start) == ["shell"]
    assert OPENAI.event_tools("/v1/chat/completions", more) == []
    added = {"type": "response.output_item.added", "item": {"type": "function_call", "name": "x"}}
    assert OPENAI.event_tools("/v1/responses", added) == ["x"]
    block = {"type": "content_block_start", "content_block": {"type": "tool_use", "name": "y"}}
    assert ANTHROPIC.event_tools("/v1/messages", block) == ["y"]


def test_event_framer_never_releases_part_of_an_event() -> None:
    events = [b"data: " + orjson.dumps({"n": i}) + b"\n\n" for i in range(5)]
    stream = b"".join(events)
    for size in (1, 3, 7, 20):
        aligner = EventFramer()
        released: list[bytes] = []
        for i in range(0, len(stream), size):
            out = aligner.feed(stream[i : i + size])
            if out:
                assert out.endswith(b"\n\n")  # whole events only
                released.append(out)
        released.append(aligner.flush())
        assert b"".join(released) == stream
