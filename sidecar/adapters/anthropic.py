"""Anthropic Messages surface: /v1/messages and /v1/messages/count_tokens."""

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
from sidecar.adapters.output import (
    AnthropicEditor,
    StreamEditor,
    TextFilter,
    anthropic_reply_texts,
)
from sidecar.adapters.sse import SSEParser
from sidecar.call import Call, Provider, Text, ToolCall, Usage
from sidecar.errors import ErrorKind, SidecarError

OPERATIONS: dict[str, tuple[str, str]] = {
    "/v1/messages": ("chat", "llm.chat"),
    "/v1/messages/count_tokens": ("count_tokens", "llm.count_tokens"),
}

_ERROR_TYPES: dict[ErrorKind, str] = {
    ErrorKind.INVALID_REQUEST: "invalid_request_error",
    ErrorKind.UNAUTHENTICATED: "authentication_error",
    ErrorKind.FORBIDDEN: "permission_error",
    ErrorKind.NOT_FOUND: "not_found_error",
    ErrorKind.METHOD_NOT_ALLOWED: "invalid_request_error",
    ErrorKind.TOO_LARGE: "request_too_large",
    ErrorKind.HEADERS_TOO_LARGE: "invalid_request_error",
    ErrorKind.RATE_LIMITED: "rate_limit_error",
    ErrorKind.INTERNAL: "api_error",
    ErrorKind.BAD_GATEWAY: "api_error",
    ErrorKind.UNAVAILABLE: "overloaded_error",
    ErrorKind.TIMEOUT: "timeout_error",
}

_TEXT = frozenset({"text"})


def message_texts(body: dict[str, Any]) -> list[Text]:
    out: list[Text] = []
    content_texts(body.get("system"), "system", out, _TEXT, body, "system")
    messages = body.get("messages")
    if not isinstance(messages, list):
        return out
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        channel = "assistant" if msg.get("role") == "assistant" else "user"
        content = msg.get("content")
        content_texts(content, channel, out, _TEXT, msg, "content")
        if isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    content_texts(block.get("content"), "tool_result", out, _TEXT, block, "content")
                elif isinstance(block, dict) and block.get("type") == "document":
                    # A plain-text document is text the model reads like any other.
                    source = block.get("source")
                    if (
                        isinstance(source, dict)
                        and source.get("type") == "text"
                        and isinstance(source.get("data"), str)
                    ):
                        out.append(Text(channel, source["data"], source, "data"))
    return out


def _tools(body: dict[str, Any]) -> tuple[list[str], list[ToolCall]]:
    names = [
        t["name"]
        for t in body.get("tools") or ()
        if isinstance(t, dict) and isinstance(t.get("name"), str)
    ]
    calls: list[ToolCall] = []
    for msg in body.get("messages") or ():
        content = msg.get("content") if isinstance(msg, dict) else None
        if not isinstance(content, list):
            continue
        for block in content:
            if (
                isinstance(block, dict)
                and block.get("type") == "tool_use"
                and isinstance(block.get("name"), str)
            ):
                calls.append(
                    ToolCall(
                        block["name"], orjson.dumps(block.get("input")).decode(), block.get("id")
                    )
                )
    return names, calls


class AnthropicAdapter:
    provider = Provider.ANTHROPIC

    def parse(self, path: str, raw: bytes) -> Call:
        body = load_object(raw)
        operation, action = OPERATIONS[path]
        return Call(
            provider=Provider.ANTHROPIC,
            operation=operation,
            action=action,
            path=path,
            model=require_model(body),
            stream=stream_flag(body),
            body=body,
            raw=raw,
            extract_texts=message_texts,
            extract_tools=_tools,
            max_output_tokens=int_or_none(body.get("max_tokens")),
        )

    def error_body(self, error: SidecarError) -> bytes:
        return orjson.dumps(
            {"type": "error", "error": {"type": _ERROR_TYPES[error.kind], "message": error.message}}
        )

    def stream_error(self, error: SidecarError) -> bytes:
        return b"event: error\ndata: " + self.error_body(error) + b"\n\n"

    def usage_from_body(self, path: str, raw: bytes) -> Usage:
        usage = Usage()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return usage
        if not isinstance(body, dict):
            return usage
        if path == "/v1/messages/count_tokens":
            usage.input_tokens = int_or_none(body.get("input_tokens"))
            return usage
        _observe_message(body, usage)
        usage.add_finish_reason(body.get("stop_reason"))
        return usage

    def stream_observer(self, path: str) -> AnthropicStreamObserver:
        return AnthropicStreamObserver()

    tool_markers: tuple[bytes, ...] = (b"tool_use",)

    def reply_texts(
        self, path: str, body: dict[str, Any]
    ) -> tuple[list[Text], list[tuple[str, Text]]]:
        return anthropic_reply_texts(body)

    def scrub(self, path: str, body: dict[str, Any]) -> bool:
        return False  # Anthropic replies carry no per-token copies of the text

    def stream_editor(self, path: str, text_filter: TextFilter) -> StreamEditor | None:
        return AnthropicEditor(text_filter) if path == "/v1/messages" else None

    def without_tools(self, path: str, body: dict[str, Any], drop: set[str]) -> None:
        tools = body.get("tools")
        if not isinstance(tools, list):
            return
        kept = [t for t in tools if not (isinstance(t, dict) and t.get("name") in drop)]
        if kept:
            body["tools"] = kept
        else:
            body.pop("tools", None)
            body.pop("tool_choice", None)
        choice = body.get("tool_choice")
        if isinstance(choice, dict) and choice.get("type") == "tool" and choice.get("name") in drop:
            body["tool_choice"] = {"type": "auto"}

    def proposed_tools(self, path: str, body: dict[str, Any]) -> list[str]:
        return [
            block["name"]
            for block in body.get("content") or ()
            if isinstance(block, dict)
            and block.get("type") in ("tool_use", "server_tool_use")
            and isinstance(block.get("name"), str)
        ]

    def event_tools(self, path: str, event: dict[str, Any]) -> list[str]:
        block = event.get("content_block")
        if (
            event.get("type") == "content_block_start"
            and isinstance(block, dict)
            and block.get("type") in ("tool_use", "server_tool_use")
            and isinstance(block.get("name"), str)
        ):
            return [block["name"]]
        return []


def _observe_message(msg: dict[str, Any], usage: Usage) -> None:
    if isinstance(msg.get("id"), str):
        usage.response_id = msg["id"]
    if isinstance(msg.get("model"), str):
        usage.response_model = msg["model"]
    _observe_usage(msg.get("usage"), usage)


def _observe_usage(u: object, usage: Usage) -> None:
    if not isinstance(u, dict):
        return
    inp = int_or_none(u.get("input_tokens"))
    if inp is not None:
        # Cached prompt tokens are input too; Anthropic reports them apart.
        inp += (int_or_none(u.get("cache_read_input_tokens")) or 0) + (
            int_or_none(u.get("cache_creation_input_tokens")) or 0
        )
        usage.input_tokens = inp
    out = int_or_none(u.get("output_tokens"))
    if out is not None:
        usage.output_tokens = out


class AnthropicStreamObserver:
    """message_start carries id, model and input usage; message_delta the rest."""

    __slots__ = ("_parser", "usage")

    def __init__(self) -> None:
        self._parser = SSEParser()
        self.usage = Usage()

    def feed(self, chunk: bytes) -> None:
        for event in self._parser.feed(chunk):
            if event.event not in ("message_start", "message_delta"):
                continue
            try:
                obj = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(obj, dict):
                continue
            if event.event == "message_start" and isinstance(obj.get("message"), dict):
                _observe_message(obj["message"], self.usage)
            elif event.event == "message_delta":
                delta = obj.get("delta")
                if isinstance(delta, dict):
                    self.usage.add_finish_reason(delta.get("stop_reason"))
                _observe_usage(obj.get("usage"), self.usage)


ADAPTER = AnthropicAdapter()
