"""The connection's deadlines: one timer for a slow head, a slow body, a hang-up, idleness.

Every limit on a caller's pace is checked from one lazily re-armed timer, so a
read never pays for a timer reset; what each limit allows, and when the timer
wakes next, is read here rather than among the parser's callbacks.
"""

from __future__ import annotations

import asyncio
import collections
import select
from collections.abc import Callable
from typing import TYPE_CHECKING

from sidecar.server.h1_limits import BODY_RATE_GRACE_S, HANGUP_CHECK_S
from sidecar.server.h1_request import Request

if TYPE_CHECKING:
    from sidecar.server.h1 import Server

# A peer that shut its side, or a broken socket, even with unread bytes still queued.
_HANGUP = getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR


class _Deadlines:
    """The part of a connection that keeps its deadlines; the connection holds the state."""

    _server: Server
    _loop: asyncio.AbstractEventLoop
    _transport: asyncio.Transport | None
    _lost: bool
    _timer: asyncio.TimerHandle | None
    _timer_at: float
    _in_head: bool
    _ignore: bool
    _head_started: float
    _body_started: float
    _request: Request | None
    _read_paused: bool
    _continue_owed: bool
    _size: int
    _busy: bool
    _queue: collections.deque[Request]
    _last_active: float
    _turn_away: Callable[[Request, int, str], None]

    # --- timers ------------------------------------------------------------------------

    def _arm(self, when: float) -> None:
        """Run `_tick` at `when`, unless it already runs sooner."""
        timer = self._timer
        if timer is not None:
            if self._timer_at <= when:
                return
            timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._tick)

    def _tick(self) -> None:
        """One timer for every deadline of the connection: head, body, hang-up, idle."""
        self._timer = None
        transport = self._transport
        if transport is None or self._lost or transport.is_closing():
            return
        server = self._server
        now = self._loop.time()
        wake = now + server.idle_timeout
        if self._in_head and not self._ignore:
            due = self._head_started + server.head_timeout
            if now >= due:
                transport.close()  # a head trickling in a byte at a time holds a connection
                return
            wake = min(wake, due)
        request = self._request
        if request is not None and not self._ignore and self._judging_body():
            verdict = self._body_verdict(now)
            if verdict is not None:
                self._turn_away(request, 408, verdict)
                return
            wake = min(wake, now + 1.0, self._body_started + server.body_timeout)
        if self._read_paused:
            if self._hung_up():
                transport.abort()  # cancels the call in hand, upstream request and all
                return
            wake = min(wake, now + HANGUP_CHECK_S)
        if not self._busy and not self._queue:  # silence while nothing is owed to the caller
            due = self._last_active + server.idle_timeout
            if now >= due:
                transport.close()
                return
            wake = min(wake, due)
        self._arm(max(wake, now + 0.05))

    def _judging_body(self) -> bool:
        """A body is being read and its pace is the caller's own (not ours, nor a 100 owed)."""
        return self._body_started > 0 and not self._read_paused and not self._continue_owed

    def _body_verdict(self, now: float) -> str | None:
        """Why the body being read is too slow, or None while it is not."""
        server = self._server
        elapsed = now - self._body_started
        if elapsed >= server.body_timeout:
            return (
                f"the request body did not arrive within {server.body_timeout:g} s "
                f"({self._size} bytes received)"
            )
        if elapsed >= BODY_RATE_GRACE_S and self._size < server.body_min_rate * elapsed:
            return (
                f"the request body arrives at {self._size / elapsed:.0f} bytes/s; "
                f"the sidecar needs at least {server.body_min_rate} bytes/s"
            )
        return None

    def _hung_up(self) -> bool:
        """The caller shut its side, seen without reading what it sent before (pipelined)."""
        assert self._transport is not None
        sock = self._transport.get_extra_info("socket")
        if sock is None:
            return False
        try:
            poller = select.poll()
            poller.register(sock.fileno(), _HANGUP)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True  # the socket is already gone
