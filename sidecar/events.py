"""A response as the stages read it: stream events decoded once, a plain reply viewed once.

Adapters make these and stages read them, so no stage parses a wire format
(the tool gate, the output guards, the budget counter and accounting import
nothing from `adapters`) and each event or reply is parsed at most once
however many stages read it. Parsing is lazy: an event or a reply that no
stage asks about is never parsed. A stage that changes an event or a reply
marks it; only what was marked is encoded again, and the upstream's own bytes
go out for the rest.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from sidecar.call import Text, Usage

ToolTexts = list[tuple[str, Text]]  # a tool call's name and its arguments, with their place
_UNREAD: Any = object()


class Reading:
    """What one stream event means, in provider-neutral terms.

    `texts` and `args` are (channel, piece) pairs: text the model generated and
    pieces of a tool call's arguments, with the channel the output guards name
    them by. An event with none of these is opaque (pings, bookkeeping events).
    """

    __slots__ = ("args", "finish", "texts", "usage", "usage_only")

    def __init__(
        self,
        texts: list[tuple[str, str]] | None = None,
        args: list[tuple[str, str]] | None = None,
        usage: bool = False,
        finish: bool = False,
        usage_only: bool = False,
    ) -> None:
        self.texts = texts if texts is not None else []
        self.args = args if args is not None else []
        self.usage = usage  # it reports token usage
        self.finish = finish  # it ends a choice, the response, or the stream
        self.usage_only = usage_only  # the usage-only chunk a caller asks for in OpenAI streams

    @property
    def opaque(self) -> bool:
        return not (self.texts or self.args or self.usage or self.finish)

    @property
    def text_chars(self) -> int:
        """Characters generated: text and tool arguments (what a budget charges)."""
        n = 0
        for _, piece in self.texts:
            n += len(piece)
        for _, piece in self.args:
            n += len(piece)
        return n


OPAQUE = Reading()


class Dialect(Protocol):
    """How one provider's stream events read; the adapter's half of `StreamEvent`."""

    def tools(self, event: StreamEvent) -> list[str]:
        """Names of the tools this event starts a call to (parsing only when it may)."""
        ...

    def read(self, event: StreamEvent) -> Reading: ...

    def text_chars(self, event: StreamEvent) -> int:
        """`read(event).text_chars`, counted without building the reading where it can."""
        ...


class StreamEvent:
    """One server-sent event of a response stream, decoded by the adapter.

    `raw` is the event's own bytes as the upstream sent them (its blank line
    included), `name` and `data` its fields (`data` is None for an event with
    no data line, such as a comment). `obj` parses `data` as a JSON object on
    first use and keeps it; stages that edit an event mutate `obj` and call
    `edit()`, or `drop()` it.
    """

    __slots__ = (
        "_dialect",
        "_obj",
        "_reading",
        "_tools",
        "data",
        "dropped",
        "edited",
        "name",
        "raw",
    )

    def __init__(self, raw: bytes, name: str, data: bytes | None, dialect: Dialect | None) -> None:
        self.raw = raw
        self.name = name
        self.data = data
        self._dialect = dialect
        self._obj: Any = _UNREAD
        self._tools: list[str] | None = None
        self._reading: Reading | None = None
        self.edited = False
        self.dropped = False

    @classmethod
    def added(cls, obj: dict[str, Any], name: str = "") -> StreamEvent:
        """An event a stage adds (held-back text let out): it has no bytes of its own yet."""
        event = cls(b"", name, None, None)
        event._obj = obj
        event.edited = True
        return event

    @property
    def obj(self) -> dict[str, Any] | None:
        """The event's data as a JSON object: parsed once, None when it is not one."""
        obj = self._obj
        if obj is _UNREAD:
            obj = None
            if self.data is not None:
                try:
                    parsed = orjson.loads(self.data)
                except orjson.JSONDecodeError:
                    parsed = None
                obj = parsed if isinstance(parsed, dict) else None
            self._obj = obj
        return obj  # type: ignore[no-any-return]

    @property
    def tools(self) -> list[str]:
        tools = self._tools
        if tools is None:
            tools = self._tools = self._dialect.tools(self) if self._dialect is not None else []
        return tools

    @property
    def reading(self) -> Reading:
        reading = self._reading
        if reading is None:
            reading = self._dialect.read(self) if self._dialect is not None else OPAQUE
            self._reading = reading
        return reading

    @property
    def usage_only(self) -> bool:
        return self.reading.usage_only

    @property
    def text_chars(self) -> int:
        """Characters of text and tool arguments generated in this event."""
        reading = self._reading
        if reading is not None:
            return reading.text_chars
        return self._dialect.text_chars(self) if self._dialect is not None else 0

    def edit(self) -> None:
        """Its `obj` changed: the adapter encodes it again."""
        self.edited = True

    def drop(self) -> None:
        self.dropped = True


class EventEditor(Protocol):
    """The output guards over a stream's decoded events (made by the adapter)."""

    def feed(self, events: list[StreamEvent]) -> list[StreamEvent]:
        """Whole events in, the events to send out (some edited, some added)."""
        ...

    def close(self) -> list[StreamEvent]:
        """The stream ended: whatever text is still held, as events."""
        ...


class ReplyReader(Protocol):
    """How one provider's plain replies read; the adapter's half of `ReplyView`."""

    tool_markers: tuple[bytes, ...]

    def proposed_tools(self, path: str, body: dict[str, Any]) -> list[str]: ...

    def reply_texts(self, path: str, body: dict[str, Any]) -> tuple[list[Text], ToolTexts]: ...

    def usage_of(self, path: str, body: dict[str, Any]) -> Usage: ...

    def scrub(self, path: str, body: dict[str, Any]) -> bool: ...


class ReplyView:
    """A plain (non-streamed) reply, parsed on first use and then shared.

    The tool gate, the output guards and accounting all read this one view;
    a reply none of them inspects is never parsed. `encode()` serializes the
    body again only when a stage marked it edited.
    """

    __slots__ = ("_body", "_encoded", "_reader", "_texts", "_usage", "edited", "path", "raw")

    def __init__(self, raw: bytes, path: str, reader: ReplyReader) -> None:
        self.raw = raw
        self.path = path
        self._reader = reader
        self._body: Any = _UNREAD
        self._texts: tuple[list[Text], ToolTexts] | None = None
        self._usage: Usage | None = None
        self._encoded: bytes | None = None
        self.edited = False

    @property
    def body(self) -> dict[str, Any] | None:
        body = self._body
        if body is _UNREAD:
            try:
                parsed = orjson.loads(self.raw)
            except orjson.JSONDecodeError:
                parsed = None
            body = self._body = parsed if isinstance(parsed, dict) else None
        return body  # type: ignore[no-any-return]

    @property
    def tools(self) -> list[str]:
        """Names of the tools the reply asks to call; a reply without a tool-call
        marker in its bytes is not parsed for them."""
        raw = self.raw
        for marker in self._reader.tool_markers:
            if marker in raw:
                break
        else:
            return []
        body = self.body
        return self._reader.proposed_tools(self.path, body) if body is not None else []

    def texts(self) -> tuple[list[Text], ToolTexts]:
        """The reply's texts and its tool calls' arguments, each with its place in `body`."""
        texts = self._texts
        if texts is None:
            body = self.body
            texts = self._texts = (
                self._reader.reply_texts(self.path, body) if body is not None else ([], [])
            )
        return texts

    @property
    def usage(self) -> Usage:
        usage = self._usage
        if usage is None:
            body = self.body
            usage = self._usage = (
                self._reader.usage_of(self.path, body) if body is not None else Usage()
            )
        return usage

    @property
    def text_chars(self) -> int:
        """Characters the model generated (as sent upstream, before any redaction)."""
        texts, calls = self.texts()
        return sum(len(t.text) for t in texts) + sum(len(t.text) for _, t in calls)

    def scrub(self) -> bool:
        """Drop copies of the text the output guards cannot redact; True if any."""
        body = self.body
        if body is not None and self._reader.scrub(self.path, body):
            self.edit()
            return True
        return False

    def edit(self) -> None:
        """`body` changed (call it after each change): the reply is encoded again."""
        self.edited = True
        self._encoded = None

    def encode(self) -> bytes:
        """The reply to send: the upstream's bytes unless a stage edited the body."""
        if not self.edited:
            return self.raw  # never parsed for this, if nothing else parsed it
        body = self.body
        if body is None:
            return self.raw
        if self._encoded is None:
            self._encoded = orjson.dumps(body)
        return self._encoded
