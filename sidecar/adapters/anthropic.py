"""Anthropic Messages surface: /v1/messages and /v1/messages/count_tokens."""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.adapters.anthropic_output import AnthropicEditor, anthropic_reply_texts
from sidecar.adapters.anthropic_tools import messages_offered, messages_without, server_urls
from sidecar.adapters.base import (
    content_texts,
    int_or_none,
    load_object,
    require_model,
    stream_flag,
)
from sidecar.adapters.output import TextFilter
from sidecar.adapters.sse import SSEParser, StreamDecoder
from sidecar.adapters.tool_names import dicts
from sidecar.call import Call, Provider, Resource, Text, ToolCall, Usage
from sidecar.errors import ErrorKind, SidecarError
from sidecar.events import OPAQUE, EventEditor, Reading, ReplyView, StreamEvent

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
    ErrorKind.MISCONFIGURED: "api_error",
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
            _block_texts(content, channel, out)
    return out


def _block_texts(blocks: list[Any], channel: str, out: list[Text], nested: bool = False) -> None:
    """Text inside the blocks that carry content of their own: tool results, search
    results (retrieved text, where indirect prompt injection arrives) and plain-text
    documents."""
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "tool_result" and not nested:  # a tool result holds no tool results
            inner = block.get("content")
            content_texts(inner, "tool_result", out, _TEXT, block, "content")
            if isinstance(inner, list):
                _block_texts(inner, "tool_result", out, nested=True)
        elif kind == "search_result":
            title = block.get("title")
            if isinstance(title, str) and title:
                out.append(Text("tool_result", title, block, "title"))
            content_texts(block.get("content"), "tool_result", out, _TEXT, block, "content")
        elif kind == "document":
            # A plain-text or content-block document is text the model reads like any other.
            source = block.get("source")
            if not isinstance(source, dict):
                continue
            if source.get("type") == "text" and isinstance(source.get("data"), str):
                out.append(Text(channel, source["data"], source, "data"))
            elif source.get("type") == "content":
                content_texts(source.get("content"), channel, out, _TEXT, source, "content")


def _tools(body: dict[str, Any]) -> tuple[list[str], list[ToolCall]]:
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
    return messages_offered(body), calls


# Content blocks that call a tool: the agent's own, the provider's, a remote MCP server's.
_CALL_BLOCKS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})


class AnthropicAdapter:
    provider = Provider.ANTHROPIC

    def parse(self, path: str, raw: bytes) -> Call:
        body = load_object(raw)
        operation, action = OPERATIONS[path]
        return Call(
            surface="anthropic",
            provider=Provider.ANTHROPIC,
            codec=self,
            operation=operation,
            action=action,
            resource=Resource("Model", require_model(body)),
            path=path,
            stream=stream_flag(body),
            body=body,
            raw=raw,
            extract_texts=message_texts,
            extract_tools=_tools,
            max_output_tokens=int_or_none(body.get("max_tokens")),
        )

    def ask_usage(self, path: str, body: dict[str, Any]) -> bool:
        """Anthropic streams always report usage: nothing to ask for."""
        return False

    def error_body(self, error: SidecarError) -> bytes:
        return orjson.dumps(
            {"type": "error", "error": {"type": _ERROR_TYPES[error.kind], "message": error.message}}
        )

    def stream_error(self, error: SidecarError) -> bytes:
        return b"event: error\ndata: " + self.error_body(error) + b"\n\n"

    def usage_from_body(self, path: str, raw: bytes) -> Usage:
        return self.reply_view(path, raw).usage

    def usage_of(self, path: str, body: dict[str, Any]) -> Usage:
        usage = Usage()
        if path == "/v1/messages/count_tokens":
            usage.input_tokens = int_or_none(body.get("input_tokens"))
            return usage
        _observe_message(body, usage)
        usage.add_finish_reason(body.get("stop_reason"))
        return usage

    def stream_observer(self, path: str) -> AnthropicStreamObserver:
        return AnthropicStreamObserver()

    def stream_decoder(self, path: str) -> StreamDecoder:
        return StreamDecoder(AnthropicEvents())

    def reply_view(self, path: str, raw: bytes) -> ReplyView:
        return ReplyView(raw, path, self)

    tool_markers: tuple[bytes, ...] = (b"tool_use",)

    def reply_texts(
        self, path: str, body: dict[str, Any]
    ) -> tuple[list[Text], list[tuple[str, Text]]]:
        return anthropic_reply_texts(body)

    def scrub(self, path: str, body: dict[str, Any]) -> bool:
        return False  # Anthropic replies carry no per-token copies of the text

    def stream_editor(self, path: str, text_filter: TextFilter) -> EventEditor | None:
        return AnthropicEditor(text_filter) if path == "/v1/messages" else None

    def offers_tools(self, path: str, body: dict[str, Any]) -> bool:
        return "tools" in body or "mcp_servers" in body

    def without_tools(self, path: str, body: dict[str, Any], drop: set[str]) -> None:
        messages_without(body, drop)

    def tool_urls(self, path: str, body: dict[str, Any]) -> list[tuple[str, str]]:
        return server_urls(body)

    def proposed_tools(self, path: str, body: dict[str, Any]) -> list[str]:
        return [
            block["name"]
            for block in dicts(body.get("content"))
            if block.get("type") in _CALL_BLOCKS and isinstance(block.get("name"), str)
        ]

    def event_tools(self, path: str, event: dict[str, Any]) -> list[str]:
        return _event_tools(event)


def _event_tools(event: dict[str, Any]) -> list[str]:
    block = event.get("content_block")
    if (
        event.get("type") == "content_block_start"
        and isinstance(block, dict)
        and block.get("type") in _CALL_BLOCKS
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


_DELTA_FIELDS = {"text_delta": "text", "input_json_delta": "partial_json"}
_STOP = Reading(finish=True)


class AnthropicEvents:
    """What Messages stream events mean (a `StreamDialect`); events are told by name."""

    __slots__ = ()

    def tools(self, event: StreamEvent) -> list[str]:
        data = event.data
        if data is None or b"tool_use" not in data:
            return []
        obj = event.obj
        return _event_tools(obj) if obj is not None else []

    def observe(self, event: StreamEvent, usage: Usage) -> None:
        """As `AnthropicStreamObserver`: message_start and message_delta only."""
        name = event.name
        if name not in ("message_start", "message_delta"):
            return
        obj = event.obj
        if obj is None:
            return
        if name == "message_start" and isinstance(obj.get("message"), dict):
            _observe_message(obj["message"], usage)
        elif name == "message_delta":
            delta = obj.get("delta")
            if isinstance(delta, dict):
                usage.add_finish_reason(delta.get("stop_reason"))
            _observe_usage(obj.get("usage"), usage)

    def text_chars(self, event: StreamEvent) -> int:
        return event.reading.text_chars

    def read(self, event: StreamEvent) -> Reading:
        name = event.name
        if name == "content_block_delta":
            obj = event.obj
            delta = obj.get("delta") if obj is not None else None
            if not isinstance(delta, dict):
                return OPAQUE
            field = _DELTA_FIELDS.get(str(delta.get("type")))
            piece = delta.get(field) if field is not None else None
            if not isinstance(piece, str):
                return OPAQUE
            assert obj is not None
            index = obj.get("index", 0)
            if field == "text":
                return Reading([(f"block {index}", piece)])
            return Reading(args=[(f"tool call {index}", piece)])
        if name == "message_stop":
            return _STOP
        if name in ("message_start", "message_delta"):
            obj = event.obj
            if obj is None:
                return OPAQUE
            holder = obj.get("message") if name == "message_start" else obj
            usage = isinstance(holder, dict) and isinstance(holder.get("usage"), dict)
            delta = obj.get("delta")
            finish = isinstance(delta, dict) and delta.get("stop_reason") is not None
            return Reading(usage=usage, finish=finish)
        return OPAQUE


ADAPTER = AnthropicAdapter()
