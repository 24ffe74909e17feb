"""What every LLM adapter offers the server: parse, observe, decode, and speak errors."""

from __future__ import annotations

from typing import Any, Protocol

from sidecar.adapters.output import TextFilter
from sidecar.adapters.sse import StreamDecoder
from sidecar.adapters.strict_json import load_object as load_object  # the one body parse
from sidecar.call import Call, Provider, Text, Usage
from sidecar.errors import ErrorKind, SidecarError
from sidecar.events import EventEditor, ReplyView
from sidecar.names import fold


class StreamObserver(Protocol):
    """Learns usage and ids from a response stream without holding it."""

    usage: Usage

    def feed(self, chunk: bytes) -> None: ...


class Adapter(Protocol):
    provider: Provider

    def parse(self, path: str, raw: bytes) -> Call: ...

    def error_body(self, error: SidecarError) -> bytes: ...

    def stream_error(self, error: SidecarError) -> bytes: ...

    def usage_from_body(self, path: str, raw: bytes) -> Usage: ...

    def usage_of(self, path: str, body: dict[str, Any]) -> Usage:
        """Usage, ids and finish reasons of a parsed plain reply."""
        ...

    def stream_observer(self, path: str) -> StreamObserver:
        """Usage from the raw bytes, for a stream no response stage decodes."""
        ...

    def stream_decoder(self, path: str) -> StreamDecoder:
        """Decodes a stream's whole events once for the response stages, learning usage."""
        ...

    def reply_view(self, path: str, raw: bytes) -> ReplyView:
        """The one view of a plain reply the response stages share."""
        ...

    def offers_tools(self, path: str, body: dict[str, Any]) -> bool:
        """Whether the request may give the model tools: a key test, so a request without
        them skips the extraction and its reply is not inspected for tool calls."""
        ...

    def without_tools(self, path: str, body: dict[str, Any], drop: set[str]) -> None:
        """Remove the named tools (and choices naming them) from a request body, in place."""
        ...

    def tool_urls(self, path: str, body: dict[str, Any]) -> list[tuple[str, str]]:
        """(server label, URL) of each remote tool server the provider is asked to call."""
        ...

    def proposed_tools(self, path: str, body: dict[str, Any]) -> list[str]:
        """Names of the tools a complete (non-streamed) response asks to call."""
        ...

    def event_tools(self, path: str, event: dict[str, Any]) -> list[str]:
        """Names of the tools one parsed stream event starts a call to."""
        ...

    def reply_texts(
        self, path: str, body: dict[str, Any]
    ) -> tuple[list[Text], list[tuple[str, Text]]]:
        """The texts of a plain reply and its tool calls' arguments, each with its place."""
        ...

    def stream_editor(self, path: str, text_filter: TextFilter) -> EventEditor | None:
        """An editor that passes a stream's decoded text deltas through the output stage."""
        ...

    def scrub(self, path: str, body: dict[str, Any]) -> bool:
        """Remove copies of the reply's text the output stage cannot redact; True if any."""
        ...

    # Byte strings that any response or stream event proposing a tool call contains,
    # so events without them are never parsed for tool calls.
    tool_markers: tuple[bytes, ...]


def require_model(body: dict[str, Any]) -> str:
    """The request's model name in the form policy matches it (folded; sent upstream as is)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise SidecarError(
            ErrorKind.INVALID_REQUEST, "'model' is required and must be a string", param="model"
        )
    # Policy matches the name it sees; an upstream that trims it or drops invisible
    # characters would run a model the policy never matched. (`isprintable` is false
    # for control, format — zero-width, bidi — and separator characters but the space.)
    if not model.isprintable() or model[0] == " " or model[-1] == " ":
        raise SidecarError(
            ErrorKind.INVALID_REQUEST,
            f"'model' {model!r} has surrounding whitespace or a control or invisible "
            "character; send the model name alone",
            code="invalid_model_name",
            param="model",
        )
    return fold(model)


def stream_flag(body: dict[str, Any]) -> bool:
    stream = body.get("stream", False)
    if stream is None:
        return False
    if not isinstance(stream, bool):
        raise SidecarError(ErrorKind.INVALID_REQUEST, "'stream' must be a boolean", param="stream")
    return stream


def int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def content_texts(
    content: object,
    channel: str,
    out: list[Text],
    text_types: frozenset[str],
    holder: Any = None,
    key: Any = None,
) -> None:
    """Collect text from a string or a list of typed content parts.

    `holder[key]` is where `content` itself sits, so a plain-string content can
    be rewritten in place; parts in a list carry their own locations.
    """
    if isinstance(content, str):
        if content:
            out.append(Text(channel, content, holder, key))
    elif isinstance(content, list):
        for i, part in enumerate(content):
            if isinstance(part, str):
                out.append(Text(channel, part, content, i))
            elif isinstance(part, dict) and part.get("type") in text_types:
                text = part.get("text")
                if isinstance(text, str) and text:
                    out.append(Text(channel, text, part, "text"))
