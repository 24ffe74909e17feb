"""A lean HTTP/1.1 client for the hop to a provider.

The proxy sends one kind of request — a POST with a body it already holds
in memory — to a handful of origins, and relays the answer as it arrives.
A general client (aiohttp's) spends about a third of the proxy's CPU per
call on machinery this hop never uses: URL objects, cookie and redirect
handling, payload registries, a timer reset per read. This one writes the
request in one `write`, parses the response with llhttp (`httptools`), hands
the body over in the pieces the socket delivered, and keeps connections
alive in a small LIFO pool per origin, with at most `max_connections` open:
further calls queue for a free one, in order, within their connect timeout.

Guarantees the pipeline relies on: a response body is never buffered whole
unless `read()` asks for it; a reader slower than the upstream pauses the
socket instead of growing memory; silence longer than the read timeout ends
the call with `TimeoutError`; a connection that ended early, or sent what is
not HTTP, raises an `UpstreamError` (an `OSError`) naming what happened; a
connection is reused only after a complete response that allowed keep-alive.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import zlib
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from sidecar.upstream.proxy import Proxy, Tunnel, connect_request

MAX_HEAD_BYTES = 64 * 1024  # status line and headers together
HIGH_WATER = 256 * 1024  # buffered body bytes before the socket is paused
IDLE_KEEPALIVE_S = 15.0  # an idle connection older than this is closed, not reused
MAX_IDLE = 64  # idle connections kept per origin


class UpstreamError(OSError):
    """The upstream connection failed; the message says how."""


class ConnectError(UpstreamError):
    pass


class Disconnected(UpstreamError):
    pass


class ProtocolError(UpstreamError):
    pass


class ConnectTimeout(ConnectError, TimeoutError):
    """No connection within the connect timeout."""


class PoolExhausted(UpstreamError, TimeoutError):
    """Every connection the upstream may have was busy for the whole wait: the upstream
    is not failing, this sidecar has as many calls in flight as it allows."""


class FirstByteTimeout(TimeoutError):
    """No response head within the first-byte timeout: nothing was received, so a retry
    is safe."""


class DeadlineExceeded(TimeoutError):
    """The call's total deadline passed while waiting for the upstream."""


def _bad_header(headers: CIMultiDict[str]) -> str:
    for name, value in headers.items():
        if any(c in name for c in "\r\n:") or "\r" in value or "\n" in value:
            return name
    return "?"


class Response:
    """One response; the body arrives through `read()` or `chunks()`, never both."""

    __slots__ = (
        "_buffered",
        "_conn",
        "_decoder",
        "_done",
        "_error",
        "_pieces",
        "_waiter",
        "_whole",
        "headers",
        "status",
    )

    def __init__(self, conn: _Connection, status: int, headers: CIMultiDict[str]) -> None:
        self._conn = conn
        self.status = status
        self.headers: Mapping[str, str] = CIMultiDictProxy(headers)
        self._pieces: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._whole = False  # read() takes everything; anyone else gets back-pressure
        encoding = headers.get("content-encoding", "").strip().lower()
        self._decoder: Any = None
        if encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._decoder = zlib.decompressobj()
        elif encoding not in ("", "identity"):
            # Never asked for (no Accept-Encoding is sent); relaying it would hand the
            # agent bytes whose encoding header the proxy drops.
            self._error = ProtocolError(
                f"upstream sent a body in unsupported encoding {encoding!r}"
            )

    @property
    def decoded(self) -> bool:
        """True when the body is decompressed here, so its Content-Encoding no longer holds."""
        return self._decoder is not None

    # --- fed by the connection -----------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        if self._error is not None:
            return
        if self._decoder is not None:
            try:
                data = self._decoder.decompress(data)
            except zlib.error as exc:
                self._fail(ProtocolError(f"upstream sent a corrupt compressed body: {exc}"))
                self._conn.abort()
                return
            if not data:
                return
        self._pieces.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER and not self._whole:
            self._conn.pause()
        self._wake()

    def _finish(self) -> None:
        decoder = self._decoder
        if decoder is not None and self._error is None:
            tail = decoder.flush()
            if tail:
                self._pieces.append(tail)
                self._buffered += len(tail)
            if not decoder.eof:
                self._fail(ProtocolError("upstream's compressed body ended before its end"))
                return
        self._done = True
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if self._done:
            return
        self._error = exc
        self._done = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        waiter = self._conn.loop.create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            self._waiter = None

    # --- used by the pipeline ------------------------------------------------------------

    async def read(self) -> bytes:
        """The whole body; the connection goes back to the pool when it is complete."""
        self._whole = True
        self._conn.resume()
        try:
            while not self._done:
                await self._wait()
            if self._error is not None:
                raise self._error
            body = b"".join(self._pieces)
            self._pieces.clear()
            return body
        finally:
            self.release()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives: each piece is everything received since the last one."""
        pieces = self._pieces
        while True:
            if self._error is not None:
                raise self._error
            if pieces:
                # Whatever arrived since the last turn goes out as one piece: one write
                # downstream instead of one per upstream packet.
                piece = pieces.popleft() if len(pieces) == 1 else b"".join(pieces)
                pieces.clear()
                self._buffered = 0
                self._conn.resume()
                yield piece
            elif self._done:
                return
            else:
                await self._wait()

    def release(self) -> None:
        """Done with this response: reuse the connection if it ended cleanly, else close it."""
        self._conn.response_released(self)

    def close(self) -> None:
        self._conn.abort()


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


class Pool:
    """Connections to one origin (scheme, host, port)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: bool,
        connect_timeout: float,
        read_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int | None = None,
        proxy: Proxy | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.ssl: ssl.SSLContext | None = None
        if tls:
            self.ssl = ssl_context if ssl_context is not None else ssl.create_default_context()
        default_port = 443 if tls else 80
        self.host_header = host if port == default_port else f"{host}:{port}"
        if ":" in host and not host.startswith("["):  # an IPv6 literal
            self.host_header = f"[{host}]" if port == default_port else f"[{host}]:{port}"
        self.proxy = proxy
        # Plain http through a proxy: requests name the origin (absolute form) and carry
        # the proxy's credentials; https goes through a CONNECT tunnel instead.
        self._forward_via_proxy = proxy is not None and not tls
        self._target_prefix = f"http://{self.host_header}" if self._forward_via_proxy else ""
        self._proxy_line = (
            f"Proxy-Authorization: {proxy.authorization}\r\n"
            if self._forward_via_proxy and proxy is not None and proxy.authorization
            else ""
        )
        # Line breaks the request line, Host, Content-Length and the blank line bring,
        # beside one per header: any other is a CR or LF smuggled into a header.
        self._fixed_breaks = 3 if self._proxy_line else 2
        self.max_connections = max_connections
        self._open = 0  # connections open or being opened: at most max_connections
        self._waiters: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()
        self._idle: list[_Connection] = []
        self._active: set[_Connection] = set()
        self.closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def head(self, method: str, target: str, headers: CIMultiDict[str], body: bytes) -> bytes:
        lines = [
            f"{method} {self._target_prefix}{target} HTTP/1.1\r\n"
            f"Host: {self.host_header}\r\n{self._proxy_line}"
        ]
        lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        text = "".join(lines)
        # One count instead of a scan per header: a CR or LF inside any name or value
        # (header injection) shows up as an extra line break.
        breaks = len(lines) + self._fixed_breaks
        if text.count("\n") != breaks or text.count("\r") != breaks:
            raise UpstreamError(
                f"header {_bad_header(headers)!r} has a character HTTP does not allow"
            )
        try:
            return text.encode("latin-1")
        except UnicodeEncodeError:
            raise UpstreamError("a request header is not encodable as Latin-1") from None

    async def request(
        self,
        method: str,
        target: str,
        headers: CIMultiDict[str],
        body: bytes,
        *,
        connect_timeout: float | None = None,
        first_byte_timeout: float | None = None,
        idle_timeout: float | None = None,
        deadline: float | None = None,
    ) -> Response:
        """`deadline` (loop time) bounds the whole call, body included; the timeouts
        default to the pool's."""
        if self.closed:
            raise ConnectError(f"the pool for {self.host_header} is closed")
        data = self.head(method, target, headers, body) + body
        conn = await self._checkout(connect_timeout, deadline)
        self._active.add(conn)
        first_byte = self.read_timeout if first_byte_timeout is None else first_byte_timeout
        try:
            return await conn.send(data, first_byte, idle_timeout, deadline)
        except BaseException:
            conn.abort()  # cancelled or failed before the response began: not reusable
            raise

    async def _checkout(self, connect_timeout: float | None, deadline: float | None) -> _Connection:
        """An idle connection, a new one while under the cap, or the next one freed."""
        timeout = self.connect_timeout if connect_timeout is None else connect_timeout
        started = self.loop.time()
        while True:
            conn = self._take_idle()
            if conn is not None:
                return conn
            limit = timeout - (self.loop.time() - started)
            if deadline is not None:
                left = deadline - self.loop.time()
                if left <= 0:
                    raise DeadlineExceeded("the call's deadline passed before connecting")
                limit = min(limit, left)
            cap = self.max_connections
            if cap is None or self._open < cap:
                self._open += 1
                return await self._open_slot(limit)
            freed = await self._wait_turn(limit, deadline, cap)
            if freed is None:
                return await self._open_slot(limit)  # a closed connection's slot, now ours
            transport = freed.transport
            if not freed.closed and transport is not None and not transport.is_closing():
                return freed
            # Closed while handed over: its slot was passed on when it closed; look again.

    async def _open_slot(self, limit: float) -> _Connection:
        """Connect in a slot already counted in `_open`; the slot is freed on failure."""
        try:
            conn = await self._connect(limit)
        except BaseException:
            self._free_slot()
            raise
        if conn.closed:  # lost before it could be counted: forget() freed nothing
            self._free_slot()
            raise Disconnected(f"the connection to {self.host_header} closed at once")
        conn.counted = True
        return conn

    async def _wait_turn(
        self, limit: float, deadline: float | None, cap: int
    ) -> _Connection | None:
        """Queue for a connection put back (returned) or a slot freed (None)."""
        waiter: asyncio.Future[_Connection | None] = self.loop.create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(max(limit, 0.0)):
                return await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed a connection or a slot just as the wait ended: pass it on.
                self._hand_back(waiter.result())
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if not isinstance(exc, TimeoutError):
                raise
            if deadline is not None and self.loop.time() >= deadline:
                raise DeadlineExceeded(
                    "the call's deadline passed waiting for a connection"
                ) from None
            raise PoolExhausted(
                f"all {cap} connections to {self.host_header} (max_connections) stayed "
                f"busy for {limit:g} s"
            ) from None

    def _hand_back(self, handed: _Connection | None) -> None:
        if handed is None:
            self._free_slot()
        else:
            self.put_back(handed)

    def _free_slot(self) -> None:
        """A connection closed (or never opened): its slot goes to the first waiter."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._open -= 1

    def _take_idle(self) -> _Connection | None:
        idle = self._idle
        now = self.loop.time()
        while idle:
            conn = idle.pop()
            transport = conn.transport
            if conn.closed or transport is None or transport.is_closing():
                continue
            if now - conn.idle_since > IDLE_KEEPALIVE_S:
                conn.abort()
                continue
            return conn
        return None

    async def _connect(self, limit: float) -> _Connection:
        loop = self.loop
        proxy = self.proxy
        via = f" through proxy {proxy.address}" if proxy is not None else ""
        try:
            async with asyncio.timeout(limit):
                if proxy is None:
                    _, conn = await loop.create_connection(
                        lambda: _Connection(self),
                        self.host,
                        self.port,
                        ssl=self.ssl,
                        server_hostname=self.host if self.ssl else None,
                    )
                elif self.ssl is None:
                    _, conn = await loop.create_connection(
                        lambda: _Connection(self), proxy.host, proxy.port
                    )
                else:
                    conn = await self._tunnel(proxy, self.ssl)
        except TimeoutError:
            raise ConnectTimeout(
                f"connecting to {self.host_header}{via} timed out after {limit:g} s"
            ) from None
        except OSError as exc:
            raise ConnectError(f"cannot connect to {self.host_header}{via}: {exc}") from exc
        return conn

    async def _tunnel(self, proxy: Proxy, context: ssl.SSLContext) -> _Connection:
        """CONNECT through the proxy, then TLS with the origin inside the tunnel."""
        loop = self.loop
        host = f"[{self.host}]" if ":" in self.host else self.host
        request = connect_request(proxy, f"{host}:{self.port}")
        raw, tunnel = await loop.create_connection(
            lambda: Tunnel(loop, request, self.host_header), proxy.host, proxy.port
        )
        try:
            await tunnel.established
            conn = _Connection(self)
            transport = await loop.start_tls(raw, conn, context, server_hostname=self.host)
        except BaseException:
            raw.abort()
            raise
        if transport is None:
            raw.abort()
            raise ConnectError(f"TLS to {self.host_header} did not start")
        conn.connection_made(transport)
        return conn

    def put_back(self, conn: _Connection) -> None:
        self._active.discard(conn)
        if self.closed:
            conn.abort()
            return
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)  # straight to the longest waiting call
                return
        if len(self._idle) >= MAX_IDLE:
            conn.abort()
            return
        conn.idle_since = self.loop.time()
        self._idle.append(conn)

    def forget(self, conn: _Connection) -> None:
        self._active.discard(conn)
        if conn in self._idle:
            self._idle.remove(conn)
        if conn.counted:
            conn.counted = False
            self._free_slot()

    def close(self) -> None:
        self.closed = True
        waiters, self._waiters = self._waiters, collections.deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(ConnectError(f"the pool for {self.host_header} is closed"))
        for conn in [*self._idle, *self._active]:
            conn.abort()
        self._idle.clear()
        self._active.clear()
