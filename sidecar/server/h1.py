"""A lean HTTP/1.1 server for the proxy listener.

The proxy listener serves a dozen fixed paths, reads bodies it holds whole
anyway, and relays streams. aiohttp's web server spent a large share of the
added latency per call on what these paths never use (a request object with
lazy properties, the router, middlewares, a task per request, a response
object that prepares itself). This one parses with llhttp (`httptools`),
hands the handler a plain `Request` with the body already read, and writes
a reply in one `write` — streams as chunked frames, one per piece.

Guarantees the handlers rely on:
- a body larger than the limit is never buffered: the request reaches the
  handler marked `too_large` as soon as that is known, and the connection
  closes after the answer (lingering briefly so the caller reads it);
- a head larger than `MAX_HEAD_BYTES` gets 431 and a malformed request 400;
  both close the connection;
- requests on one connection are answered in order (pipelining);
- a caller slower than the stream pauses the stream, not memory;
- a caller that disconnects cancels its call at once, upstream request and all;
- a caller that disconnects is noticed even while reading is paused behind
  pipelined requests (the socket is polled for a hang-up);
- an idle keep-alive connection is closed after `idle_timeout`; a head (or,
  on a new connection, the first one) that takes longer than `head_timeout`
  closes its connection; a body that takes longer than `body_timeout`, or
  arrives slower than `body_min_rate` once `BODY_RATE_GRACE_S` have passed,
  gets 408 and the connection closes;
- at most `max_connections` connections are served; the next ones get 503;
- the bodies held across all connections stay under `buffer_budget`: a body
  that would cross it gets 503 with Retry-After, unread, and its connection closes;
- after a large body, free heap memory goes back to the system;
- `100 Continue` goes only to HTTP/1.1 callers, after the replies owed before it;
- HEAD replies and 204/304 replies carry no body, whatever the handler returns;
- `stop()` stops accepting, lets calls in flight finish for a grace period
  and closes idle connections at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import select
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import cast
from urllib.parse import unquote

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from sidecar.replies import Reply, StreamReply
from sidecar.server import memory

log = logging.getLogger("sidecar.http")

MAX_HEAD_BYTES = 64 * 1024  # request line and headers together
HIGH_WATER = 256 * 1024  # unsent bytes at which a stream waits for its caller
IDLE_TIMEOUT_S = 75.0
HEAD_TIMEOUT_S = 30.0  # from the first byte of a request (or the connection) to its last header
BODY_TIMEOUT_S = 60.0  # from the end of the head to the end of the body
BODY_MIN_RATE = 16 * 1024  # bytes a second, averaged over the body so far
BODY_RATE_GRACE_S = 5.0  # a body is not judged on its rate before this
MAX_CONNECTIONS = 1024
BUSY_RETRY_AFTER = "1"  # seconds, on a 503 for too many connections or bytes held
HANGUP_CHECK_S = 0.5  # how often a read-paused connection is polled for a hang-up
TRIM_AFTER_BYTES = 1024 * 1024  # a body this large is followed by a malloc_trim
TRIM_DELAY_S = 0.5  # trims are coalesced: at most one per this long
LINGER_S = 2.0  # reading (and dropping) a refused body so the caller sees the answer
MAX_QUEUED = 8  # pipelined requests parsed ahead before reading pauses
BACKLOG = 512


class Request:
    """One parsed request; `body` is complete unless `too_large`."""

    __slots__ = (
        "body",
        "headers",
        "keep_alive",
        "length",
        "method",
        "path",
        "query",
        "refused",
        "too_large",
        "version",
    )

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        headers: CIMultiDictProxy[str],
        version: str,
        keep_alive: bool,
        length: int | None,
    ) -> None:
        self.method = method
        self.version = version
        self.path = path
        self.query = query
        self.headers = headers
        self.keep_alive = keep_alive
        self.length = length  # the declared Content-Length, if any
        self.body = b""
        self.too_large = False
        # Answered by the server itself, unread: (status, message) — too slow, too much held.
        self.refused: tuple[int, str] | None = None


Handler = Callable[[Request], Awaitable[Reply | StreamReply]]
# Answers for requests the server refuses before any handler: (status, message, request).
ErrorReply = Callable[[int, str, Request | None], Reply]

_FRAMING = ("content-length", "transfer-encoding", "connection")
_STATUS_LINES: dict[int, bytes] = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus
}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        # A status the stdlib does not name, such as Anthropic's 529 "overloaded".
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} Status {status}\r\n".encode()
    return line


class _Clock:
    """The Date header, formatted once a second rather than once a response."""

    __slots__ = ("_line", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def line(self) -> bytes:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._line = f"date: {formatdate(now, usegmt=True)}\r\n".encode()
        return self._line


_CLOCK = _Clock()


class _Refusal(Exception):
    """Raised in a parser callback: answer with this status and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class HeaderError(ValueError):
    """A reply header that would break the response's framing (CR or LF inside)."""


def _head(status: int, headers: CIMultiDict[str], framing: str) -> bytes:
    if "content-length" in headers or "transfer-encoding" in headers or "connection" in headers:
        headers = headers.copy()
        for name in _FRAMING:
            headers.popall(name, None)
    lines = [f"{name}: {value}" for name, value in headers.items()]
    text = "\r\n".join(lines)
    if text.count("\n") != max(len(lines) - 1, 0) or text.count("\r") != text.count("\n"):
        raise HeaderError("a reply header contains CR or LF")
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        # Only the headers latin-1 cannot carry go out as UTF-8; the others keep their bytes.
        raw = b"\r\n".join(_encode_line(line) for line in lines)
    return b"".join(
        (_status_line(status), raw, b"\r\n" if lines else b"", _CLOCK.line(), framing.encode())
    )


def _encode_line(line: str) -> bytes:
    try:
        return line.encode("latin-1")
    except UnicodeEncodeError:
        return line.encode("utf-8")


# A peer that shut its side, or a broken socket, even with unread bytes still queued.
_HANGUP = getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR

# Statuses that never carry a body (RFC 9110 6.4.1), whatever the handler hands over.
_NO_BODY = frozenset({204, 304})


class _Connection(asyncio.Protocol):
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

    def _write(self, request: Request, reply: Reply, keep_alive: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        body = reply.body
        if reply.status in _NO_BODY:
            body, framing = b"", ""
        else:
            framing = f"content-length: {len(body)}\r\n"
        if not keep_alive:
            framing += "connection: close\r\n"
        elif request.version == "1.0":
            framing += "connection: keep-alive\r\n"  # an HTTP/1.0 caller that asked for it
        try:
            head = _head(reply.status, reply.headers, framing + "\r\n")
        except HeaderError as exc:
            log.error("refusing to write a reply: %s", exc, extra={"path": request.path})
            fallback = self._server.error_reply(500, "the sidecar built an invalid reply", request)
            framing = f"content-length: {len(fallback.body)}\r\n"
            if not keep_alive:
                framing += "connection: close\r\n"
            head = _head(500, fallback.headers, framing + "\r\n")
            body = fallback.body
        if request.method == "HEAD" or not body:
            transport.write(head)
        elif len(body) < 65536:
            transport.write(head + body)
        else:
            transport.write(head)
            transport.write(body)

    async def _stream(self, request: Request, reply: StreamReply, keep_alive: bool) -> bool:
        chunks = reply.chunks
        try:
            transport = self._transport
            if transport is None or transport.is_closing():
                return False
            if reply.status in _NO_BODY or request.method == "HEAD":
                # No body may follow; what the stream holds is dropped (and closed below).
                self._write(request, Reply(reply.status, reply.headers, b""), keep_alive)
                return keep_alive
            chunked = request.version != "1.0"
            if chunked:
                framing = "transfer-encoding: chunked\r\n"
                if not keep_alive:
                    framing += "connection: close\r\n"
            else:
                # An HTTP/1.0 caller: the end of the body is the end of the connection.
                framing = "connection: close\r\n"
                keep_alive = False
            try:
                head = _head(reply.status, reply.headers, framing + "\r\n")
            except HeaderError as exc:
                log.error("refusing to write a reply: %s", exc, extra={"path": request.path})
                fallback = self._server.error_reply(
                    500, "the sidecar built an invalid reply", request
                )
                self._write(request, fallback, keep_alive)
                return keep_alive
            transport.write(head)
            self._streaming = reply
            self._stream_chunked = chunked
            async for chunk in chunks:
                if not chunk:
                    continue
                if chunked:
                    transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                else:
                    transport.write(chunk)
                if self._write_paused:
                    await self._drained()
            if chunked:
                transport.write(b"0\r\n\r\n")
            return keep_alive
        except ConnectionResetError:
            return False
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception:
            # A stream that broke after its head went out cannot turn into an error
            # reply; an aborted connection tells the caller it is incomplete.
            log.exception("stream failed mid-way", extra={"path": request.path})
            if self._transport is not None:
                self._transport.abort()
            return False
        finally:
            self._streaming = None
            with contextlib.suppress(Exception):
                await chunks.aclose()  # type: ignore[attr-defined]
            if reply.done is not None:
                reply.done()

    async def _drained(self) -> None:
        if self._lost:
            raise ConnectionResetError("the caller disconnected")
        self._drain = self._loop.create_future()
        try:
            await self._drain
        finally:
            self._drain = None

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

    def _write_refusal(self, status: int, message: str) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        reply = self._server.error_reply(status, message, None)
        framing = f"content-length: {len(reply.body)}\r\nconnection: close\r\n\r\n"
        transport.write(_head(status, reply.headers, framing) + reply.body)

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

    def cut(self) -> None:
        """The grace is over: end a stream with its farewell (an error event), else abort.

        Streams are written in whole events, so the farewell starts on an event
        boundary; the caller's SDK reads it as the provider's own error event.
        """
        transport = self._transport
        reply = self._streaming
        if transport is None or transport.is_closing():
            return
        if reply is None or reply.farewell is None:
            transport.abort()
            return
        farewell = reply.farewell()
        if self._stream_chunked:
            farewell = b"%x\r\n%b\r\n0\r\n\r\n" % (len(farewell), farewell)
        self._streaming = None
        if self._task is not None:
            self._task.cancel()  # before the write: nothing of the stream may follow it
        transport.write(farewell)
        transport.close()  # after the farewell is flushed (or stop() aborts it)


class Server:
    """The listener: accepts connections and runs `handler` for each request."""

    def __init__(
        self,
        handler: Handler,
        error_reply: ErrorReply,
        *,
        max_body_bytes: int,
        idle_timeout: float = IDLE_TIMEOUT_S,
        head_timeout: float | None = None,
        body_timeout: float = BODY_TIMEOUT_S,
        body_min_rate: int = BODY_MIN_RATE,
        max_connections: int = MAX_CONNECTIONS,
        buffer_budget: int | None = None,
    ) -> None:
        self.handler = handler
        self.error_reply = error_reply
        self.max_body_bytes = max_body_bytes
        self.idle_timeout = idle_timeout
        self.head_timeout = head_timeout if head_timeout is not None else HEAD_TIMEOUT_S
        self.body_timeout = body_timeout
        self.body_min_rate = body_min_rate
        self.max_connections = max_connections
        # Bodies held at once, all connections together; by default four of the largest.
        self.buffer_budget = buffer_budget if buffer_budget is not None else 4 * max_body_bytes
        self.buffered = 0
        self._trim: asyncio.TimerHandle | None = None
        self.connections: set[_Connection] = set()
        self.stopping = False
        self.all_closed = asyncio.Event()  # set when stopping and the last connection ends
        self.loop = asyncio.get_running_loop()
        self._server: asyncio.Server | None = None

    def trim_soon(self) -> None:
        """A large body was let go: give the memory back shortly (one trim for a burst)."""
        if self._trim is None:
            self._trim = self.loop.call_later(TRIM_DELAY_S, self._trim_now)

    def _trim_now(self) -> None:
        self._trim = None
        memory.trim()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        memory.tune_malloc()
        self._server = await self.loop.create_server(
            lambda: _Connection(self), host, port, reuse_address=True, backlog=BACKLOG
        )
        address = self._server.sockets[0].getsockname()
        return str(address[0]), int(address[1])

    async def stop(self, grace: float) -> None:
        """Stop accepting; give calls in flight `grace` seconds; then cut the rest."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.shutdown()
        if self.connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.all_closed.wait(), grace)
        cut = [conn.task for conn in self.connections if conn.task is not None]
        for conn in list(self.connections):
            conn.cut()
        if cut:
            # Let the cut calls unwind (streams closed, upstream calls cancelled) first.
            await asyncio.wait(cut, timeout=1.0)
        for conn in list(self.connections):
            conn.abort()  # a farewell the caller would not read
        if self._trim is not None:
            self._trim.cancel()
            self._trim = None
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None


def _split_target(url: bytes) -> tuple[str, str]:
    """Path (percent-decoded) and query of a request target, origin or absolute form."""
    if url[:1] != b"/":
        try:
            parsed = httptools.parse_url(url)
        except httptools.HttpParserInvalidURLError:
            return "", ""
        raw_path = (parsed.path or b"/").decode("latin-1")
        query = (parsed.query or b"").decode("latin-1")
    else:
        text = url.decode("latin-1")
        raw_path, _, query = text.partition("?")
        raw_path = raw_path.partition("#")[0]
    if "%" in raw_path:
        raw_path = unquote(raw_path, errors="replace")
    return raw_path, query


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__
