"""What an OpenAI reply stream means: its usage and ids, and its texts per channel.

A stream is read event by event on the relay's hot path, in shapes of its
own: chat and completion chunks carry their fields inline, Responses events
wrap a response. Reading them apart from the adapter (`openai`), which reads
requests, keeps the usage observer, the stream dialect and the fast paths
that skip parsing most chunks side by side.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from sidecar.adapters.base import int_or_none
from sidecar.adapters.openai_output import call_body
from sidecar.adapters.openai_tools import TOOL_MARKERS, _event_tools
from sidecar.adapters.sse import SSEParser
from sidecar.adapters.tool_names import dicts
from sidecar.call import Usage
from sidecar.events import OPAQUE, Reading, StreamEvent


def _observe_object(obj: dict[str, Any], usage: Usage) -> None:
    """Read id, model, usage and finish reasons from a response or a chunk."""
    if usage.response_id is None and isinstance(obj.get("id"), str):
        usage.response_id = obj["id"]
    if isinstance(obj.get("model"), str):
        usage.response_model = obj["model"]
    u = obj.get("usage")
    if isinstance(u, dict):
        inp = int_or_none(u.get("prompt_tokens"))
        if inp is None:
            inp = int_or_none(u.get("input_tokens"))
        out = int_or_none(u.get("completion_tokens"))
        if out is None:
            out = int_or_none(u.get("output_tokens"))
        if inp is not None:
            usage.input_tokens = inp
        if out is not None:
            usage.output_tokens = out
    choices = obj.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, dict):
                usage.add_finish_reason(choice.get("finish_reason"))
    status = obj.get("status")
    if obj.get("object") == "response" and isinstance(status, str) and status != "in_progress":
        usage.add_finish_reason(status)


# Chunks only matter for accounting when they carry usage, a finish reason or a
# whole response object; the rest (most of a stream) are searched, not parsed.
_WORTH_PARSING = re.compile(rb'"(?:usage|finish_reason|status)"\s*:\s*[{"]')


class OpenAIStreamObserver:
    """Chat/completions chunks carry the fields inline; Responses events wrap a response."""

    __slots__ = ("_parser", "_seen_first", "usage")

    def __init__(self) -> None:
        self._parser = SSEParser()
        self._seen_first = False
        self.usage = Usage()

    def feed(self, chunk: bytes) -> None:
        for event in self._parser.feed(chunk):
            data = event.data
            if self._seen_first and _WORTH_PARSING.search(data) is None:
                continue
            if data == b"[DONE]":
                continue
            try:
                obj = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(obj, dict):
                continue
            self._seen_first = True
            response = obj.get("response")
            if isinstance(response, dict):
                _observe_object(response, self.usage)
            else:
                _observe_object(obj, self.usage)


_TEXT_DELTAS = frozenset({"response.output_text.delta", "response.refusal.delta"})
_ARGUMENT_DELTAS = frozenset(
    {"response.function_call_arguments.delta", "response.custom_tool_call_input.delta"}
)
_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})
_DONE = Reading(finish=True)


class OpenAIEvents:
    """What chat and completions chunks and Responses events mean (a `StreamDialect`).

    Channels are named as the output editors name them, so a stage can tell
    one choice's or one call's text from another's.
    """

    __slots__ = ("_seen_first",)

    def __init__(self) -> None:
        self._seen_first = False

    def tools(self, event: StreamEvent) -> list[str]:
        data = event.data
        if data is None:
            return []
        for marker in TOOL_MARKERS:
            if marker in data:
                obj = event.obj
                return _event_tools(obj) if obj is not None else []
        return []

    def text_chars(self, event: StreamEvent) -> int:
        obj = event.obj
        if obj is not None:
            choices = obj.get("choices")
            if isinstance(choices, list) and len(choices) == 1:
                choice = choices[0]
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if isinstance(delta, dict) and len(delta) == 1 and "text" not in choice:
                    content = delta.get("content")
                    if isinstance(content, str):
                        return len(content)  # the common chunk: its content alone
        return event.reading.text_chars

    def observe(self, event: StreamEvent, usage: Usage) -> None:
        """As `OpenAIStreamObserver`: only events that may carry what it reads are parsed."""
        data = event.data
        if data == b"[DONE]" or (self._seen_first and _WORTH_PARSING.search(data or b"") is None):
            return
        obj = event.obj
        if obj is None:
            return
        self._seen_first = True
        response = obj.get("response")
        _observe_object(response if isinstance(response, dict) else obj, usage)

    def read(self, event: StreamEvent) -> Reading:
        obj = event.obj
        if obj is None:
            data = event.data
            return _DONE if data is not None and data.strip() == b"[DONE]" else OPAQUE
        choices = obj.get("choices")
        if isinstance(choices, list):
            return _read_chunk(obj, choices)
        return _read_responses_event(obj)


def _read_chunk(obj: dict[str, Any], choices: list[Any]) -> Reading:
    usage = isinstance(obj.get("usage"), dict)
    if not choices:
        return Reading(None, None, usage, False, usage) if usage else OPAQUE
    texts: list[tuple[str, str]] = []
    args: list[tuple[str, str]] = []
    finish = False
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        index = choice.get("index", 0)
        delta = choice.get("delta")
        if isinstance(delta, dict):
            content = delta.get("content")
            if content and isinstance(content, str):
                texts.append((f"choice {index}", content))
            if len(delta) != 1 or not content:  # most chunks carry their content alone
                _rest_of_delta(delta, index, texts, args)
        text = choice.get("text")  # /v1/completions
        if text and isinstance(text, str):
            texts.append((f"choice {index}", text))
        if choice.get("finish_reason") is not None:
            finish = True
    return Reading(texts, args, usage, finish, False)


def _rest_of_delta(
    delta: dict[str, Any], index: object, texts: list[tuple[str, str]], args: list[tuple[str, str]]
) -> None:
    """A chunk's refusal text and tool-call argument pieces."""
    refusal = delta.get("refusal")
    if refusal and isinstance(refusal, str):
        texts.append((f"refusal {index}", refusal))
    for tc in dicts(delta.get("tool_calls")):
        fn, key = call_body(tc)
        piece = fn.get(key) if fn is not None else None
        if piece and isinstance(piece, str):
            args.append((f"tool call {index}:{tc.get('index', 0)}", piece))
    legacy = delta.get("function_call")  # the pre-tools `functions` API
    piece = legacy.get("arguments") if isinstance(legacy, dict) else None
    if piece and isinstance(piece, str):
        args.append((f"tool call {index}:fc", piece))


def _read_responses_event(obj: dict[str, Any]) -> Reading:
    kind = obj.get("type")
    delta = obj.get("delta")
    if kind in _TEXT_DELTAS and isinstance(delta, str):
        channel = f"output {obj.get('output_index', 0)}:{obj.get('content_index', 0)}"
        return Reading([(channel, delta)])
    if kind in _ARGUMENT_DELTAS and isinstance(delta, str):
        return Reading(args=[(f"args {obj.get('output_index', 0)}", delta)])
    if kind in _ENDS:
        response = obj.get("response")
        usage = isinstance(response, dict) and isinstance(response.get("usage"), dict)
        return Reading(usage=usage, finish=True)
    return OPAQUE
