"""OpenAI-compatible surface: chat, completions, embeddings, responses, models."""

from __future__ import annotations

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
    openai_reply_texts,
    openai_scrub,
)
from sidecar.adapters.openai_stream import OpenAIEvents, OpenAIStreamObserver, _observe_object
from sidecar.adapters.openai_tools import (
    TOOL_MARKERS,
    _event_tools,
    _proposed_tools,
    chat_offered,
    chat_without,
    responses_offered,
    responses_server_urls,
    responses_without,
)
from sidecar.adapters.output import TextFilter
from sidecar.adapters.sse import StreamDecoder
from sidecar.adapters.tool_names import dicts
from sidecar.call import Call, Provider, Resource, Text, ToolCall, Usage
from sidecar.errors import ErrorKind, SidecarError
from sidecar.events import EventEditor, ReplyView

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


ADAPTER = OpenAIAdapter()
