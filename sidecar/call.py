"""The normalized call every adapter produces and every stage consumes.

Stages never parse a wire format: they read this. Guard texts and the token
estimate are computed lazily, so a request that no stage inspects pays only
for the JSON parse it needs anyway (model, stream flag).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any


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


@dataclass(eq=False)
class Call:
    """One LLM call, independent of the API that carried it."""

    provider: Provider
    operation: str  # GenAI operation name: chat, text_completion, embeddings, ...
    action: str  # the sidecar's action name: llm.chat, llm.embeddings, ...
    path: str
    model: str | None
    stream: bool
    body: dict[str, Any]
    raw: bytes
    extract_texts: Callable[[dict[str, Any]], list[Text]] = field(repr=False)
    extract_tools: Callable[[dict[str, Any]], tuple[list[str], list[ToolCall]]] = field(repr=False)
    max_output_tokens: int | None = None
    query: str = ""  # the request's query string (Azure's api-version), passed upstream

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
