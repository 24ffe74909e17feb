"""A stage: one concern of a call, with hooks the runner calls in order.

In the style of Envoy's filter chain, every hook is optional:

* `request` runs before the call goes anywhere; it refuses by raising a
  `SidecarError` (the typed refusal: its kind decides the status the caller
  sees) and may record edits on the `Call`;
* `reply` sees a plain reply once, before it goes out; it may refuse it or
  rewrite it through the `PlainReply` it is handed (whose one `ReplyView`
  every hook shares: the body is parsed at most once);
* `stream` is asked once when a streamed reply starts, and returns the hook
  that reads the stream's events as the adapter decoded them (or None);
* `complete` always runs once the call has ended, whatever way it ended,
  after the reply is on the wire (settlement, accounting).

`applies` is asked once per bundle generation, so a stage the bundle does
not use costs nothing per call. The runner opens `span_name` around the
request hook and hands the span to `describe` before ending it.
"""

from __future__ import annotations

from collections.abc import Awaitable

from opentelemetry.trace import Span

from sidecar.bundle.snapshot import Snapshot
from sidecar.chain.exchange import Exchange, Outcome
from sidecar.errors import SidecarError
from sidecar.events import ReplyReader, ReplyView, StreamEvent

Refusal = SidecarError  # what a hook raises to stop the call


class PlainReply:
    """A whole reply body, seen by every reply hook; re-encoded only if one edited it.

    Hooks that read what the reply says share its one view (`view()`), made by
    the surface's adapter, so the body is parsed once however many read it; a
    hook that edits the parsed body marks the view, and `body` encodes it then.
    """

    __slots__ = ("_body", "_changed", "_view")

    def __init__(self, body: bytes, view: ReplyView | None = None) -> None:
        self._body = body
        self._changed = False
        self._view = view

    def view(self, reader: ReplyReader, path: str) -> ReplyView:
        view = self._view
        if view is None:
            view = self._view = ReplyView(self._body, path, reader)
        return view

    @property
    def body(self) -> bytes:
        view = self._view
        return view.encode() if view is not None and view.edited else self._body

    @property
    def changed(self) -> bool:
        return self._changed or (self._view is not None and self._view.edited)

    def replace(self, body: bytes) -> None:
        """A new body altogether: views of the old one no longer apply."""
        self._body = body
        self._changed = True
        self._view = None


class Stage:
    """The base every stage derives from; the hooks it does not override cost nothing."""

    name: str = ""  # the key of its timing
    span_name: str = ""  # the span the runner opens around `request`; "" for none

    def applies(self, snapshot: Snapshot) -> bool:
        return True

    def request(self, ex: Exchange) -> Awaitable[None] | None:
        return None

    def describe(self, ex: Exchange, span: Span, error: SidecarError | None) -> None:
        """Set this stage's attributes on its span (only called when spans record)."""

    def reply(self, ex: Exchange, reply: PlainReply) -> Awaitable[None] | None:
        return None

    def stream(self, ex: Exchange, ok: bool) -> StreamHook | None:
        """This stage's reader of a streamed reply (`ok`: its status is a 2xx), if any."""
        return None

    def complete(self, ex: Exchange, outcome: Outcome) -> None:
        return None


class StreamHook:
    """One stage's reader of one stream: decoded events in, the events to send out.

    `events` may mark events edited or dropped, add events, or refuse the rest of
    the stream by raising (the relay then ends it with an error event in the
    caller's API, and `error_type` goes in the books). `close` sees the events
    of an unterminated tail when the upstream ends; `end` runs once, however
    the stream stopped, with the refusal that stopped it, if any.
    """

    error_type = "refused"  # the books' error type for a refusal from this hook

    def events(self, events: list[StreamEvent]) -> list[StreamEvent]:
        return events

    def close(self, events: list[StreamEvent]) -> list[StreamEvent]:
        return events

    def end(self, error: SidecarError | None) -> None:
        return None
