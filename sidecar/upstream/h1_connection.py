"""One keep-alive connection to the upstream: llhttp's callbacks and the call's timers.

The pool decides which connection a call gets; this is what happens on it
once the request is written: the response head parsed and bounded, the body
passed to its `Response`, silence and deadlines watched by one lazily re-armed
timer, and the connection put back or dropped when the response is released.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

import httptools
from multidict import CIMultiDict

from sidecar.upstream.h1_errors import (
    DeadlineExceeded,
    Disconnected,
    FirstByteTimeout,
    ProtocolError,
)
from sidecar.upstream.h1_response import Response

if TYPE_CHECKING:
    from sidecar.upstream.h1 import Pool

MAX_HEAD_BYTES = 64 * 1024  # status line and headers together


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.counted = False  # holds one of the pool's max_connections slots
        self.idle_since = 0.0
        self._head_waiter: asyncio.Future[Response] | None = None
        self._response: Response | None = None
        self._raw_headers: list[tuple[str, str]] = []
        self._head_bytes = 0
        self._complete = False
        self._until_close = False
        self._keep_alive = False
        self._in_head = False
        self._head_bytes = 0  # raw bytes received while the head is incomplete
        self._header_bytes = 0  # the headers parsed so far
        self._timeout = 0.0
        self._idle_timeout = 0.0
        self._deadline: float | None = None  # loop time by which the whole call must end
        self._paused = False
        self._last_rx = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # loop time the armed timer fires at

    # --- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._last_rx = self.loop.time()
        try:
            self.parser.feed_data(data)
            if self._in_head:
                # Counted raw: the parser hands over a header only when its line ends,
                # so an endless line would otherwise grow without limit.
                self._head_bytes += len(data)
                if self._head_bytes > MAX_HEAD_BYTES:
                    raise httptools.HttpParserError(
                        f"response headers exceed {MAX_HEAD_BYTES} bytes"
                    )
        except httptools.HttpParserError as exc:
            self._error(ProtocolError(f"upstream sent a malformed HTTP response: {exc}"))
            self.abort()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        self.pool.forget(self)
        response = self._response
        if response is not None and not self._complete and self._until_close:
            self._complete = True
            response._finish()  # the body was delimited by the connection's end
            return
        if self._head_waiter is not None or (response is not None and not self._complete):
            detail = f": {exc}" if exc else ""
            self._error(Disconnected(f"upstream closed the connection mid-response{detail}"))

    # --- httptools callbacks -------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > MAX_HEAD_BYTES:
            raise httptools.HttpParserError(f"response headers exceed {MAX_HEAD_BYTES} bytes")
        self._raw_headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        headers = CIMultiDict(self._raw_headers)
        self._raw_headers = []
        if 100 <= status < 200:
            return  # an interim response; the real one follows
        self._in_head = False
        if self._idle_timeout != self._timeout:
            # From here on, silence is measured against the idle timeout.
            self._timeout = self._idle_timeout
            self._arm_at(self._next_check())
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self._until_close = "content-length" not in headers and not chunked
        response = Response(self, status, headers)
        self._response = response
        self._keep_alive = self.parser.should_keep_alive()  # only meaningful at this point
        waiter = self._head_waiter
        self._head_waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def on_body(self, body: bytes) -> None:
        if self._response is not None:
            self._response._feed(body)

    def on_message_complete(self) -> None:
        response = self._response
        if response is None or self._complete:
            return  # the end of an interim (1xx) response
        self._complete = True
        # The timer stays armed: on a reused connection it serves the next call too
        # (see `_arm_at`); here it would only find the call complete.
        response._finish()

    # --- used by the pool and the response -----------------------------------------------

    def send(
        self,
        data: bytes,
        first_byte_timeout: float,
        idle_timeout: float | None = None,
        deadline: float | None = None,
    ) -> asyncio.Future[Response]:
        assert self.transport is not None
        self._response = None
        self._complete = False
        self._until_close = False
        self._keep_alive = False
        self._in_head = True
        self._head_bytes = 0
        self._header_bytes = 0
        self._head_waiter = waiter = self.loop.create_future()
        self._last_rx = self.loop.time()
        self._timeout = first_byte_timeout
        self._idle_timeout = first_byte_timeout if idle_timeout is None else idle_timeout
        self._deadline = deadline
        self._arm_at(self._next_check())
        self.transport.write(data)
        return waiter

    def _next_check(self) -> float:
        at = self._last_rx + self._timeout
        deadline = self._deadline
        return at if deadline is None or deadline > at else deadline

    def _arm_at(self, when: float) -> None:
        """Make sure the silence check runs by `when`.

        One timer per connection, re-armed lazily: a read never pays for a timer
        reset, and a keep-alive call reuses the timer the previous call left armed
        whenever it fires no later than this one needs (it then looks again and
        re-arms for what is left). A call with a shorter timeout or deadline than
        the armed timer gets its own.
        """
        timer = self._timer
        if timer is not None:
            if self._timer_at <= when:
                return
            timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._check_silence)

    def _check_silence(self) -> None:
        self._timer = None
        if self.closed or self._complete:
            return
        now = self.loop.time()
        deadline = self._deadline
        if deadline is not None and now >= deadline:
            self._error(DeadlineExceeded("the call's deadline passed before the upstream ended"))
            self.abort()
            return
        timeout = self._timeout
        if self._paused:  # the reader is slow, not the upstream: look again later
            at = now + timeout
            self._arm_at(at if deadline is None or deadline > at else deadline)
            return
        if now - self._last_rx < timeout:
            self._arm_at(self._next_check())
            return
        if self._in_head:
            self._error(FirstByteTimeout(f"no response from the upstream within {timeout:g} s"))
        else:
            self._error(TimeoutError(f"no data from the upstream for {timeout:g} s"))
        self.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _error(self, exc: BaseException) -> None:
        waiter = self._head_waiter
        if waiter is not None:
            self._head_waiter = None
            if not waiter.done():
                waiter.set_exception(exc)
        elif self._response is not None:
            self._response._fail(exc)

    def pause(self) -> None:
        if not self._paused and self.transport is not None and not self.closed:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self._last_rx = self.loop.time()
            self.transport.resume_reading()

    def response_released(self, response: Response) -> None:
        if response is not self._response:
            return
        self._response = None
        if self._complete and response._error is None and self._keep_alive:
            self.resume()
            self.pool.put_back(self)
        else:
            self.abort()

    def abort(self) -> None:
        self._cancel_timer()
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()
        self.closed = True
        self.pool.forget(self)
