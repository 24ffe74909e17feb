"""The normalized request every surface produces and every stage consumes.

Stages never parse a wire format: they read this. An LLM call and a tool
call differ only in their action and resource, so identity, authorization,
guards, limits and telemetry serve both without knowing which surface
carried the request. Guard texts and the token estimate are computed lazily,
so a request that no stage inspects pays only for the parse it needs anyway.
Stages that change the body record the edit; the body is serialized once,
when it is sent.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import orjson


class Provider(enum.Enum):
    """The wire dialect of a surface: decides error shapes and auth headers."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"


@dataclass(frozen=True, slots=True)
class Text:
    """One piece of text a guard reads, labelled with where it came from.

    `holder` and `key` locate the string in the parsed body (`holder[key]`), so
    a guard that redacts can rewrite it in place and nothing else is touched.
    """

    channel: str  # "system" | "user" | "assistant" | "tool_result" | "prompt" | "input"
    text: str
    holder: Any = field(default=None, compare=False, repr=False)
    key: Any = field(default=None, compare=False, repr=False)

    def replace(self, new: str) -> None:
        """Write `new` where this text was found in the body."""
        if self.holder is None:
            raise ValueError("this text has no place in a body to write to")
        self.holder[self.key] = new


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call present in the request (proposed earlier by the model)."""

    name: str
    arguments: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Resource:
    """What a call acts on, as policy names it: a `Model` or a `Tool` and its id."""

    type: str
    id: str


class Codec(Protocol):
    """The request-side operations only the wire format's owner can do.

    Stages reach the body through these, never by its keys: the LLM adapters
    implement them for their APIs; a surface without a body (a tool check)
    has none.
    """

    def offers_tools(self, path: str, body: dict[str, Any]) -> bool: ...

    def without_tools(self, path: str, body: dict[str, Any], drop: set[str]) -> None: ...

    def tool_urls(self, path: str, body: dict[str, Any]) -> list[tuple[str, str]]: ...

    def ask_usage(self, path: str, body: dict[str, Any]) -> bool:
        """Ask a stream to report usage at its end; True when the body was changed."""
        ...


def _no_texts(body: dict[str, Any]) -> list[Text]:
    return []


def _no_tools(body: dict[str, Any]) -> tuple[list[str], list[ToolCall]]:
    return [], []


@dataclass(eq=False)
class Call:
    """One outbound call, independent of the surface and API that carried it."""

    surface: str  # the API that carried it: openai, anthropic, or a tool surface
    action: str  # the sidecar's action name: llm.chat, llm.embeddings, tool.call, ...
    resource: Resource
    operation: str = ""  # GenAI operation name: chat, text_completion, execute_tool, ...
    path: str = ""
    stream: bool = False
    body: dict[str, Any] = field(default_factory=dict)
    raw: bytes = b""  # the body as received
    provider: Provider | None = None  # the LLM wire dialect, when the call is an LLM's
    codec: Codec | None = field(default=None, repr=False)
    # The request's metadata — HTTP headers, or what a non-HTTP surface extracted into
    # that shape — from which identity reads the caller's credentials.
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Policy context a surface adds (names the bundle's schema declares).
    attributes: dict[str, Any] = field(default_factory=dict)
    extract_texts: Callable[[dict[str, Any]], list[Text]] = field(default=_no_texts, repr=False)
    extract_tools: Callable[[dict[str, Any]], tuple[list[str], list[ToolCall]]] = field(
        default=_no_tools, repr=False
    )
    max_output_tokens: int | None = None
    query: str = ""  # the request's query string (Azure's api-version), passed upstream
    _edited: bool = field(default=False, init=False, repr=False)
    _encoded: bytes | None = field(default=None, init=False, repr=False)

    @property
    def model(self) -> str | None:
        """The model an LLM call names (folded, as policy matches it); None for a tool."""
        return self.resource.id if self.resource.type == "Model" else None

    def edited(self) -> None:
        """A stage changed `body` in place: it is serialized again, once, when sent."""
        self._edited = True
        self._encoded = None

    def wire(self) -> bytes:
        """The body to send: the bytes received, unless a stage edited it."""
        if not self._edited:
            return self.raw
        if self._encoded is None:
            self._encoded = orjson.dumps(self.body)
        return self._encoded

    @cached_property
    def texts(self) -> list[Text]:
        return self.extract_texts(self.body)

    @cached_property
    def tool_names(self) -> list[str]:
        return self.extract_tools(self.body)[0]

    @cached_property
    def tool_calls(self) -> list[ToolCall]:
        return self.extract_tools(self.body)[1]

    @cached_property
    def token_estimate(self) -> int:
        """Prompt tokens, estimated at four characters a token (no tokenizer)."""
        chars = sum(len(t.text) for t in self.texts)
        return (chars + 3) // 4


@dataclass(slots=True)
class Usage:
    """What a response reported about itself; filled incrementally on streams."""

    response_id: str | None = None
    response_model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reasons: list[str] = field(default_factory=list)

    def add_finish_reason(self, reason: object) -> None:
        if isinstance(reason, str) and reason not in self.finish_reasons:
            self.finish_reasons.append(reason)
