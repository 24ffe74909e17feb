"""Where a provider's reply carries text, plain and streamed, for the output stage.

The output guards know nothing of wire formats; each provider's readers and
editors do. For a plain reply they list the texts and tool-call arguments
with their places in the parsed body, so a redaction rewrites exactly those
strings. For a stream they pass each text delta through a `TextFilter`
(which holds back what may still be an entity and redacts what is complete)
and rewrite only the events whose text changed; the held-back rest of a text
goes out before the event that ends it, as one more delta of the same kind.
Editors read the events the adapter decoded (each parsed once, shared with
the other response stages) and mark the ones they change; the adapter
encodes only those.

What they share lives here: the filter a stream's text passes through and
the base of every stream editor. The readers and editors themselves are in
`openai_output` and `anthropic_output`, one wire format each.
"""

from __future__ import annotations

from typing import Any, Protocol

from sidecar.events import StreamEvent
from sidecar.guards.finding import Finding

Edit = tuple[Finding, Any]  # a finding and the redaction operator that replaces it


class TextFilter(Protocol):
    def feed(self, channel: str, piece: str, *, tool: str | None = None) -> str: ...

    def end(self, channel: str, *, tool: str | None = None) -> str: ...


def _sse(data: dict[str, Any], event: str = "") -> list[StreamEvent]:
    """A new event (held-back text let out), as a one-event list to add to the output."""
    return [StreamEvent.added(data, event)]


def _edited(event: StreamEvent) -> StreamEvent:
    event.edit()
    return event


class _Base:
    """Subclasses rewrite decoded events (`_handle`) and flush held text (`_finish`)."""

    def __init__(self, filter_: TextFilter) -> None:
        self._filter = filter_

    def feed(self, events: list[StreamEvent]) -> list[StreamEvent]:
        return self._handle(events)

    def close(self) -> list[StreamEvent]:
        return self._finish()

    def _handle(self, events: list[StreamEvent]) -> list[StreamEvent]:
        raise NotImplementedError

    def _finish(self) -> list[StreamEvent]:
        raise NotImplementedError
