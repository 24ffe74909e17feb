"""OpenAI-compatible surface: chat, completions, embeddings, responses, models."""

from __future__ import annotations

import re
from typing import Any

import orjson

from sidecar.adapters.base import (
    content_texts,
    int_or_none,
    load_object,
    require_model,
    stream_flag,
)
from sidecar.adapters.openai_output import (
    OpenAIChatEditor,
    OpenAIResponsesEditor,
    call_body,
    openai_reply_texts,
    openai_scrub,
)
from sidecar.adapters.openai_tools import (
    chat_message_calls,
    chat_offered,
    chat_without,
    output_item_call,
    responses_offered,
    responses_server_urls,
    responses_without,
)
from sidecar.adapters.output import TextFilter
from sidecar.adapters.sse import SSEParser, StreamDecoder
from sidecar.adapters.tool_names import dicts
from sidecar.call import Call, Provider, Resource, Text, ToolCall, Usage
from sidecar.errors import ErrorKind, SidecarError
from sidecar.events import OPAQUE, EventEditor, Reading, ReplyView, StreamEvent

# path -> (GenAI operation name, sidecar action)
OPERATIONS: dict[str, tuple[str, str]] = {
    "/v1/chat/completions": ("chat", "llm.chat"),
    "/v1/completions": ("text_completion", "llm.completion"),
    "/v1/embeddings": ("embeddings", "llm.embeddings"),
    "/v1/responses": ("chat", "llm.responses"),
}

_ERROR_TYPES: dict[ErrorKind, str] = {
    ErrorKind.INVALID_REQUEST: "invalid_request_error",
    ErrorKind.UNAUTHENTICATED: "authentication_error",
    ErrorKind.FORBIDDEN: "permission_error",
    ErrorKind.NOT_FOUND: "not_found_error",
    ErrorKind.METHOD_NOT_ALLOWED: "invalid_request_error",
    ErrorKind.TOO_LARGE: "invalid_request_error",
    ErrorKind.HEADERS_TOO_LARGE: "invalid_request_error",
    ErrorKind.RATE_LIMITED: "rate_limit_error",
    ErrorKind.INTERNAL: "server_error",
    ErrorKind.MISCONFIGURED: "server_error",
    ErrorKind.BAD_GATEWAY: "server_error",
    ErrorKind.UNAVAILABLE: "server_error",
    ErrorKind.TIMEOUT: "timeout_error",
}

_CHAT_TEXT = frozenset({"text", "input_text", "output_text"})
_RESPONSES_TEXT = frozenset({"input_text", "output_text", "text"})

# `_call"` ends the type of every Responses call item (function_call, mcp_call,
# web_search_call, ...); an MCP approval request asks for a call.
TOOL_MARKERS: tuple[bytes, ...] = (
    b"tool_calls",
    b"function_call",
    b'_call"',
    b"mcp_approval_request",
)


def chat_texts(body: dict[str, Any]) -> list[Text]:
    out: list[Text] = []
    messages = body.get("messages")
    if not isinstance(messages, list):
        return out
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        role = msg.get("role")
        channel = {
            "system": "system",
            "developer": "system",
            "assistant": "assistant",
            "tool": "tool_result",
            "function": "tool_result",
        }.get(role if isinstance(role, str) else "", "user")
        content_texts(msg.get("content"), channel, out, _CHAT_TEXT, msg, "content")
    return out


def _chat_tools(body: dict[str, Any]) -> tuple[list[str], list[ToolCall]]:
    calls: list[ToolCall] = []
    for msg in body.get("messages") or ():
        if not isinstance(msg, dict) or ("tool_calls" not in msg and "function_call" not in msg):
            continue
        legacy = msg.get("function_call")  # a call made through the legacy `functions`
        fns: list[tuple[Any, Any]] = [(legacy, None)]
        for tc in dicts(msg.get("tool_calls")):
            fns.append((tc.get("function"), tc.get("id")))
        for fn, call_id in fns:
            if isinstance(fn, dict) and isinstance(fn.get("name"), str):
                args = fn.get("arguments")
                calls.append(ToolCall(fn["name"], args if isinstance(args, str) else "", call_id))
    return chat_offered(body), calls


def prompt_texts(body: dict[str, Any]) -> list[Text]:
    out: list[Text] = []
    for key in ("prompt", "input"):
        value = body.get(key)
        if isinstance(value, str):
            out.append(Text("prompt", value, body, key))
        elif isinstance(value, list):
            out.extend(
                Text("prompt", v, value, i) for i, v in enumerate(value) if isinstance(v, str)
            )
    return out


def responses_texts(body: dict[str, Any]) -> list[Text]:
    out: list[Text] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        out.append(Text("system", instructions, body, "instructions"))
    items = body.get("input")
    if isinstance(items, str):
        out.append(Text("user", items, body, "input"))
        return out
    if not isinstance(items, list):
        return out
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            channel = {"system": "system", "developer": "system", "assistant": "assistant"}.get(
                role if isinstance(role, str) else "", "user"
            )
            content_texts(item.get("content"), channel, out, _RESPONSES_TEXT, item, "content")
        elif kind in ("function_call_output", "custom_tool_call_output", "mcp_call"):
            # An earlier turn's MCP call carries the server's answer as its `output`.
            content_texts(item.get("output"), "tool_result", out, _RESPONSES_TEXT, item, "output")
    return out


def _responses_tools(body: dict[str, Any]) -> tuple[list[str], list[ToolCall]]:
    calls: list[ToolCall] = []
    items = body.get("input")
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and item.get("type") == "function_call":
                name, args = item.get("name"), item.get("arguments")
                if isinstance(name, str):
                    calls.append(
                        ToolCall(name, args if isinstance(args, str) else "", item.get("call_id"))
                    )
    return responses_offered(body), calls


def _no_tools(body: dict[str, Any]) -> tuple[list[str], list[ToolCall]]:
    return [], []


_EXTRACTORS = {
    "/v1/chat/completions": (chat_texts, _chat_tools, "max_completion_tokens", "max_tokens"),
    "/v1/completions": (prompt_texts, _no_tools, "max_tokens", "max_tokens"),
    "/v1/embeddings": (prompt_texts, _no_tools, "", ""),
    "/v1/responses": (responses_texts, _responses_tools, "max_output_tokens", "max_output_tokens"),
}


_USAGE_ON_REQUEST = ("/v1/chat/completions", "/v1/completions")  # stream_options paths


class OpenAIAdapter:
    provider = Provider.OPENAI

    def parse(self, path: str, raw: bytes) -> Call:
        body = load_object(raw)
        operation, action = OPERATIONS[path]
        texts, tools, max_key, alt_key = _EXTRACTORS[path]
        max_out = int_or_none(body.get(max_key)) if max_key else None
        if max_out is None and alt_key:
            max_out = int_or_none(body.get(alt_key))
        return Call(
            surface="openai",
            provider=Provider.OPENAI,
            codec=self,
            operation=operation,
            action=action,
            resource=Resource("Model", require_model(body)),
            path=path,
            stream=stream_flag(body),
            body=body,
            raw=raw,
            extract_texts=texts,
            extract_tools=tools,
            max_output_tokens=max_out,
        )

    def ask_usage(self, path: str, body: dict[str, Any]) -> bool:
        """Ask a streamed chat or completions call to report usage; True if the body changed."""
        if path not in _USAGE_ON_REQUEST:
            return False
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            return False
        opts = dict(options) if isinstance(options, dict) else {}
        opts["include_usage"] = True
        body["stream_options"] = opts
        return True

    def error_body(self, error: SidecarError) -> bytes:
        return orjson.dumps(
            {
                "error": {
                    "message": error.message,
                    "type": _ERROR_TYPES[error.kind],
                    "param": error.param,
                    "code": error.code,
                }
            }
        )

    def stream_error(self, error: SidecarError) -> bytes:
        # The SDK raises APIError on any data chunk with an "error" key.
        return b"data: " + self.error_body(error) + b"\n\n"

    def usage_from_body(self, path: str, raw: bytes) -> Usage:
        return self.reply_view(path, raw).usage

    def usage_of(self, path: str, body: dict[str, Any]) -> Usage:
        usage = Usage()
        _observe_object(body, usage)
        return usage

    def stream_observer(self, path: str) -> OpenAIStreamObserver:
        return OpenAIStreamObserver()

    def stream_decoder(self, path: str) -> StreamDecoder:
        return StreamDecoder(OpenAIEvents())

    def reply_view(self, path: str, raw: bytes) -> ReplyView:
        return ReplyView(raw, path, self)

    tool_markers: tuple[bytes, ...] = TOOL_MARKERS

    def reply_texts(
        self, path: str, body: dict[str, Any]
    ) -> tuple[list[Text], list[tuple[str, Text]]]:
        return openai_reply_texts(path, body)

    def scrub(self, path: str, body: dict[str, Any]) -> bool:
        return openai_scrub(body)

    def stream_editor(self, path: str, text_filter: TextFilter) -> EventEditor | None:
        if path == "/v1/responses":
            return OpenAIResponsesEditor(text_filter)
        if path in ("/v1/chat/completions", "/v1/completions"):
            return OpenAIChatEditor(text_filter)
        return None

    def offers_tools(self, path: str, body: dict[str, Any]) -> bool:
        if path == "/v1/chat/completions":
            return "tools" in body or "functions" in body or "web_search_options" in body
        # A stored prompt (`prompt: {id}`) may bring tools of its own, unseen here.
        return path == "/v1/responses" and ("tools" in body or "prompt" in body)

    def without_tools(self, path: str, body: dict[str, Any], drop: set[str]) -> None:
        if path == "/v1/responses":
            responses_without(body, drop)
        else:
            chat_without(body, drop)

    def tool_urls(self, path: str, body: dict[str, Any]) -> list[tuple[str, str]]:
        return responses_server_urls(body) if path == "/v1/responses" else []

    def proposed_tools(self, path: str, body: dict[str, Any]) -> list[str]:
        return _proposed_tools(body)

    def event_tools(self, path: str, event: dict[str, Any]) -> list[str]:
        return _event_tools(event)


def _proposed_tools(body: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for choice in dicts(body.get("choices")):
        message = choice.get("message")
        if isinstance(message, dict):
            names += chat_message_calls(message)
    for item in dicts(body.get("output")):
        name = output_item_call(item)
        if name:
            names.append(name)
    return names


def _event_tools(event: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for choice in dicts(event.get("choices")):
        delta = choice.get("delta")
        if isinstance(delta, dict):
            # only the first delta of a call carries its name
            names += chat_message_calls(delta)
    name = output_item_call(event.get("item"))
    if name:
        names.append(name)
    response = event.get("response")
    if isinstance(response, dict):
        names += _proposed_tools(response)
    return names


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


ADAPTER = OpenAIAdapter()
