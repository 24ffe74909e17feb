"""One caller's connection to the proxy listener: parse, queue, answer in order.

llhttp's callbacks, the queue of pipelined requests and the hand-over to the
handler live here; writing replies and keeping deadlines are bases of the
connection class, each in its own module, so this one reads as the request's
path from bytes to handler.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING, cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from sidecar.replies import StreamReply
from sidecar.server.h1_deadlines import _Deadlines
from sidecar.server.h1_limits import (
    BODY_RATE_GRACE_S,
    HANGUP_CHECK_S,
    HIGH_WATER,
    LINGER_S,
    MAX_HEAD_BYTES,
    MAX_QUEUED,
    TRIM_AFTER_BYTES,
)
from sidecar.server.h1_replies import _ReplyWriter
from sidecar.server.h1_request import Request
from sidecar.server.h1_wire import _reason, _split_target

if TYPE_CHECKING:
    from sidecar.server.h1 import Server

log = logging.getLogger("sidecar.http")


class _Refusal(Exception):
    """Raised in a parser callback: answer with this status and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Connection(_ReplyWriter, _Deadlines, asyncio.Protocol):
    """One client connection: parse, queue, answer in order."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._loop = server.loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._queue: collections.deque[Request] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        # The request being parsed.
        self._url = b""
        self._raw_headers: list[tuple[str, str]] = []
        self._request: Request | None = None
        self._pieces: list[bytes] = []
        self._size = 0
        self._in_head = False
        self._head_bytes = 0
        self._head_size = 0  # request line and headers as parsed
        self._head_started = 0.0
        self._body_started = 0.0
        self._held = 0  # body bytes of this connection counted in the server's budget
        self._continue_owed = False  # a 100 Continue waits for earlier replies
        self._dispatched = False  # the request being parsed was handed over early
        # State of the connection.
        self._busy = False
        self._lost = False
        self._closing = False  # answer what is in hand, then close
        self._ignore = False  # read no further requests from this connection
        self._read_paused = False
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._last_active = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._linger: asyncio.TimerHandle | None = None
        self._refusal: tuple[int, str] | None = None  # to send once earlier replies are out
        self._streaming: StreamReply | None = None  # the stream being written, if any
        self._stream_chunked = False
        self._first_check = min(server.head_timeout, server.body_timeout, BODY_RATE_GRACE_S)

    # --- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER)
        server = self._server
        now = self._loop.time()
        if len(server.connections) >= server.max_connections:
            # Past the cap a connection costs a socket and this answer, nothing more.
            self._stop_reading()
            self._write_refusal(
                503, f"the sidecar serves at most {server.max_connections} connections"
            )
            self._linger_close()
            return
        server.connections.add(self)
        self._last_active = now
        self._head_started = now  # the first head is due within head_timeout of connecting
        self._in_head = True
        self._arm(now + min(self._first_check, server.idle_timeout))

    def data_received(self, data: bytes) -> None:
        self._last_active = self._loop.time()
        if self._ignore:
            return  # the rest of a refused body, or what follows an upgrade offer
        if self._request is None:  # not in a body: these bytes are (or start) a head
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # An h2c or WebSocket upgrade offer: answer what was asked in HTTP/1.1
            # and close, as the connection cannot carry on in either protocol.
            self._stop_reading()
        except httptools.HttpParserCallbackError as exc:
            refusal = exc.__context__
            if not isinstance(refusal, _Refusal):
                log.error("request parsing failed", exc_info=refusal or exc)
                refusal = _Refusal(400, "malformed HTTP request")
            self._refuse(refusal.status, refusal.message)
            return
        except httptools.HttpParserError as exc:
            if not self._ignore:  # not after a request that ended the connection
                self._refuse(400, f"malformed HTTP request: {_reason(exc)}")
            return
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES:
            self._refuse(431, f"request line and headers exceed {MAX_HEAD_BYTES} bytes")

    def eof_received(self) -> bool | None:
        # The caller closed its side; the way clients hang up mid-call. Close ours,
        # which cancels what it was waiting for.
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        server = self._server
        server.connections.discard(self)
        if server.stopping and not server.connections:
            server.all_closed.set()
        for timer in (self._timer, self._linger):
            if timer is not None:
                timer.cancel()
        self._pieces = []
        self._release(self._held)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_exception(ConnectionResetError("the caller disconnected"))
        self._queue.clear()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    # --- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        if not self._in_head:
            self._in_head = True
            self._head_started = self._loop.time()
            # One timer covers the head's deadline and, when a body follows, its first
            # rate check; mostly one already runs that soon and nothing is re-armed.
            self._arm(self._head_started + self._first_check)
        self._head_size = 0
        self._url = b""
        self._raw_headers = []
        self._pieces = []
        self._size = 0
        self._dispatched = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        self._raw_headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        parser = self._parser
        if self._head_size + len(self._url) > MAX_HEAD_BYTES:
            raise _Refusal(431, f"request line and headers exceed {MAX_HEAD_BYTES} bytes")
        coding = next((v for k, v in self._raw_headers if k.lower() == "transfer-encoding"), None)
        if coding is not None and coding.strip().lower() != "chunked":
            raise _Refusal(400, f"unsupported Transfer-Encoding {coding.strip()!r}; send chunked")
        headers = CIMultiDictProxy(CIMultiDict(self._raw_headers))
        path, query = _split_target(self._url)
        raw_length = headers.get("content-length")
        length = int(raw_length) if raw_length is not None and raw_length.isdigit() else None
        request = Request(
            parser.get_method().decode("ascii", "replace"),
            path,
            query,
            headers,
            parser.get_http_version(),
            parser.should_keep_alive() and not self._closing,
            length,
        )
        self._request = request
        server = self._server
        limit = server.max_body_bytes
        if length is not None and length > limit:
            self._too_large(request)
        elif length is not None and server.buffered + length > server.buffer_budget:
            self._over_budget(request)
        else:
            self._body_started = 0.0
            if length or coding is not None:
                self._start_body_clock()
            if request.version == "1.1" and headers.get("expect", "").lower() == "100-continue":
                if self._busy or self._queue:
                    self._continue_owed = True  # after the replies owed before it
                else:
                    self._send_continue()

    def _start_body_clock(self) -> None:
        self._body_started = self._loop.time()

    def _send_continue(self) -> None:
        if self._continue_owed and self._request is not None:
            self._start_body_clock()  # the body was waiting for this answer, not slow
        self._continue_owed = False
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        request = self._request
        if request is None or request.too_large or request.refused is not None:
            return
        server = self._server
        size = len(body)
        self._size += size
        if self._size > server.max_body_bytes:
            self._drop_body()
            self._too_large(request)
            return
        if server.buffered + size > server.buffer_budget:
            self._over_budget(request)
            return
        self._held += size
        server.buffered += size
        self._pieces.append(body)

    def on_message_complete(self) -> None:
        request = self._request
        self._request = None
        self._body_started = 0.0
        self._head_bytes = 0
        if request is None or self._dispatched:
            return
        pieces = self._pieces
        self._pieces = []
        request.body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        del pieces  # the pieces go now, not when the body does: half the peak of a large body
        self._dispatch(request)
        if not request.keep_alive:
            self._stop_reading()  # whatever follows is not read, nor answered

    # --- handing requests to the handler -------------------------------------------------

    def _drop_body(self) -> None:
        """Forget the body being read (it will not be answered), and its share of the budget."""
        held = sum(map(len, self._pieces))
        self._pieces = []
        self._release(min(held, self._held))

    def _release(self, size: int) -> None:
        if size <= 0:
            return
        self._held -= size
        server = self._server
        server.buffered -= size
        if size >= TRIM_AFTER_BYTES:
            server.trim_soon()

    def _over_budget(self, request: Request) -> None:
        budget = self._server.buffer_budget
        self._turn_away(
            request,
            503,
            f"the sidecar holds {budget} bytes of request bodies already; retry shortly",
        )

    def _turn_away(self, request: Request, status: int, message: str) -> None:
        """Answer in place of the handler, without reading the rest; close after."""
        self._drop_body()
        request.refused = (status, message)
        request.keep_alive = False
        if not self._dispatched:
            self._dispatch(request)
            self._dispatched = True
        self._stop_reading()

    def _too_large(self, request: Request) -> None:
        """Answer now, without reading the body; the connection cannot be reused."""
        request.too_large = True
        request.keep_alive = False
        self._dispatch(request)
        self._dispatched = True
        self._stop_reading()

    def _stop_reading(self) -> None:
        self._closing = True
        self._ignore = True

    def _dispatch(self, request: Request) -> None:
        if self._lost:
            return
        self._queue.append(request)
        if len(self._queue) >= MAX_QUEUED and not self._read_paused and self._transport:
            self._read_paused = True
            self._transport.pause_reading()
            self._arm(self._loop.time() + HANGUP_CHECK_S)
        if self._task is None:
            self._task = self._loop.create_task(self._run())
        elif self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _run(self) -> None:
        queue = self._queue
        try:
            while True:
                if not queue:
                    if self._closing:
                        if self._refusal is not None:
                            self._write_refusal(*self._refusal)
                        self._close()
                        return
                    self._waiter = self._loop.create_future()
                    await self._waiter
                    self._waiter = None
                    continue
                request = queue.popleft()
                if self._read_paused and len(queue) < MAX_QUEUED // 2 and self._transport:
                    self._read_paused = False
                    self._transport.resume_reading()
                    if self._body_started:
                        self._start_body_clock()  # the pause was ours, not the caller's
                self._busy = True
                keep_alive = await self._answer(request)
                self._busy = False
                self._release(min(len(request.body), self._held))
                if self._continue_owed and not queue:
                    self._send_continue()
                self._last_active = self._loop.time()
                if not keep_alive or self._server.stopping:
                    self._closing = True
                    queue.clear()
        except asyncio.CancelledError:
            pass  # the caller went away, or the server stopped
        except Exception:
            log.exception("the proxy listener failed on a connection")
            if self._transport is not None:
                self._transport.abort()

    async def _answer(self, request: Request) -> bool:
        """Write one reply; True when the connection may carry another request."""
        if request.refused is not None:
            self._write(request, self._server.error_reply(*request.refused, request), False)
            return False
        try:
            reply = await self._server.handler(request)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._lost or task is None or task.cancelling():
                raise  # the caller went away or the server is stopping
            log.error("handler raised CancelledError of its own", extra={"path": request.path})
            reply = self._server.error_reply(500, "the sidecar failed on this call", request)
        except Exception:
            log.exception("handler failed", extra={"path": request.path})
            reply = self._server.error_reply(500, "the sidecar failed on this call", request)
        keep_alive = request.keep_alive and not self._closing
        if isinstance(reply, StreamReply):
            return await self._stream(request, reply, keep_alive)
        self._write(request, reply, keep_alive)
        return keep_alive

    # --- closing -------------------------------------------------------------------------

    def _refuse(self, status: int, message: str) -> None:
        """Answer a request no handler can read, after the replies owed before it; close."""
        self._stop_reading()
        self._request = None
        if self._task is not None and not self._task.done():
            self._refusal = (status, message)  # written when the queue is answered
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(None)
            return
        self._write_refusal(status, message)
        self._linger_close()

    def _close(self) -> None:
        if self._request is not None or self._dispatched or self._refusal is not None:
            self._linger_close()  # the caller may still be sending a refused body
        elif self._transport is not None:
            self._transport.close()

    def _linger_close(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing() or self._linger is not None:
            return
        if transport.can_write_eof():
            transport.write_eof()
        if self._read_paused:
            transport.resume_reading()
        self._linger = self._loop.call_later(LINGER_S, transport.close)

    def shutdown(self) -> None:
        """Finish what is in hand, then close; close at once if idle."""
        self._closing = True
        if not self._busy and not self._queue and self._transport is not None:
            if self._request is None:
                self._transport.close()
        elif self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
