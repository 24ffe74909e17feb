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
from sidecar.adapters.output import (
    OpenAIChatEditor,
    OpenAIResponsesEditor,
    StreamEditor,
    TextFilter,
    openai_reply_texts,
    openai_scrub,
)
from sidecar.adapters.sse import SSEParser
from sidecar.call import Call, Provider, Text, ToolCall, Usage
from sidecar.errors import ErrorKind, SidecarError

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
    ErrorKind.BAD_GATEWAY: "server_error",
    ErrorKind.UNAVAILABLE: "server_error",
    ErrorKind.TIMEOUT: "timeout_error",
}

_CHAT_TEXT = frozenset({"text", "input_text", "output_text"})
_RESPONSES_TEXT = frozenset({"input_text", "output_text", "text"})


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
    names: list[str] = []
    for tool in body.get("tools") or ():
        if isinstance(tool, dict):
            fn = tool.get("function")
            name = fn.get("name") if isinstance(fn, dict) else tool.get("name")
            if isinstance(name, str):
                names.append(name)
    calls: list[ToolCall] = []
    for msg in body.get("messages") or ():
        if isinstance(msg, dict) and isinstance(msg.get("tool_calls"), list):
            for tc in msg["tool_calls"]:
                fn = tc.get("function") if isinstance(tc, dict) else None
                if isinstance(fn, dict) and isinstance(fn.get("name"), str):
                    args = fn.get("arguments")
                    calls.append(
                        ToolCall(fn["name"], args if isinstance(args, str) else "", tc.get("id"))
                    )
    return names, calls


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
        elif kind in ("function_call_output", "custom_tool_call_output"):
            content_texts(item.get("output"), "tool_result", out, _RESPONSES_TEXT, item, "output")
    return out


def _responses_tools(body: dict[str, Any]) -> tuple[list[str], list[ToolCall]]:
    names: list[str] = []
    for tool in body.get("tools") or ():
        if isinstance(tool, dict):
            name = tool.get("name") or tool.get("type")
            if isinstance(name, str):
                names.append(name)
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
    return names, calls


def _tool_name(obj: object) -> str | None:
    """A tool's or tool call's name in any OpenAI shape: {function: {name}} or {name}."""
    if not isinstance(obj, dict):
        return None
    fn = obj.get("function")
    name = fn.get("name") if isinstance(fn, dict) else obj.get("name")
    if name is None and isinstance(obj.get("type"), str) and obj["type"] not in ("function",):
        name = obj["type"]  # hosted tools (web_search, file_search, ...) go by their type
    return name if isinstance(name, str) else None


def _call_item_name(item: object) -> str | None:
    """The tool a Responses API output item calls, if it is a call."""
    if isinstance(item, dict) and item.get("type") in ("function_call", "custom_tool_call"):
        name = item.get("name")
        return name if isinstance(name, str) else None
    return None


def _no_tools(body: dict[str, Any]) -> tuple[list[str], list[ToolCall]]:
    return [], []


_EXTRACTORS = {
    "/v1/chat/completions": (chat_texts, _chat_tools, "max_completion_tokens", "max_tokens"),
    "/v1/completions": (prompt_texts, _no_tools, "max_tokens", "max_tokens"),
    "/v1/embeddings": (prompt_texts, _no_tools, "", ""),
    "/v1/responses": (responses_texts, _responses_tools, "max_output_tokens", "max_output_tokens"),
}


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
            provider=Provider.OPENAI,
            operation=operation,
            action=action,
            path=path,
            model=require_model(body),
            stream=stream_flag(body),
            body=body,
            raw=raw,
            extract_texts=texts,
            extract_tools=tools,
            max_output_tokens=max_out,
        )

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
        usage = Usage()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return usage
        if isinstance(body, dict):
            _observe_object(body, usage)
        return usage

    def stream_observer(self, path: str) -> OpenAIStreamObserver:
        return OpenAIStreamObserver()

    tool_markers: tuple[bytes, ...] = (b"tool_calls", b"function_call", b"custom_tool_call")

    def reply_texts(
        self, path: str, body: dict[str, Any]
    ) -> tuple[list[Text], list[tuple[str, Text]]]:
        return openai_reply_texts(path, body)

    def scrub(self, path: str, body: dict[str, Any]) -> bool:
        return openai_scrub(body)

    def stream_editor(self, path: str, text_filter: TextFilter) -> StreamEditor | None:
        if path == "/v1/responses":
            return OpenAIResponsesEditor(text_filter)
        if path in ("/v1/chat/completions", "/v1/completions"):
            return OpenAIChatEditor(text_filter)
        return None

    def without_tools(self, path: str, body: dict[str, Any], drop: set[str]) -> None:
        tools = body.get("tools")
        if not isinstance(tools, list):
            return
        kept = [t for t in tools if _tool_name(t) not in drop]
        if kept:
            body["tools"] = kept
        else:
            # With no tools left, a tool_choice or parallel_tool_calls is an upstream error.
            for key in ("tools", "tool_choice", "parallel_tool_calls"):
                body.pop(key, None)
        choice = body.get("tool_choice")
        if isinstance(choice, dict) and _tool_name(choice) in drop:
            body["tool_choice"] = "auto"

    def proposed_tools(self, path: str, body: dict[str, Any]) -> list[str]:
        names: list[str] = []
        for choice in body.get("choices") or ():
            message = choice.get("message") if isinstance(choice, dict) else None
            if isinstance(message, dict):
                for tc in message.get("tool_calls") or ():
                    name = _tool_name(tc)
                    if name:
                        names.append(name)
        for item in body.get("output") or ():
            name = _call_item_name(item)
            if name:
                names.append(name)
        return names

    def event_tools(self, path: str, event: dict[str, Any]) -> list[str]:
        names: list[str] = []
        for choice in event.get("choices") or ():
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict):
                for tc in delta.get("tool_calls") or ():
                    name = _tool_name(tc)
                    if name:  # only the first delta of a call carries its name
                        names.append(name)
        name = _call_item_name(event.get("item"))
        if name:
            names.append(name)
        response = event.get("response")
        if isinstance(response, dict):
            names += self.proposed_tools(path, response)
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


ADAPTER = OpenAIAdapter()
