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

from multidict import CIMultiDict

from sidecar.upstream.h1_connection import MAX_HEAD_BYTES, _Connection
from sidecar.upstream.h1_errors import (
    ConnectError,
    ConnectTimeout,
    DeadlineExceeded,
    Disconnected,
    FirstByteTimeout,
    PoolExhausted,
    ProtocolError,
    UpstreamError,
)
from sidecar.upstream.h1_response import HIGH_WATER, Response
from sidecar.upstream.proxy import Proxy, Tunnel, connect_request

__all__ = [
    "HIGH_WATER",
    "IDLE_KEEPALIVE_S",
    "MAX_HEAD_BYTES",
    "MAX_IDLE",
    "ConnectError",
    "ConnectTimeout",
    "DeadlineExceeded",
    "Disconnected",
    "FirstByteTimeout",
    "Pool",
    "PoolExhausted",
    "ProtocolError",
    "Response",
    "UpstreamError",
]

IDLE_KEEPALIVE_S = 15.0  # an idle connection older than this is closed, not reused
MAX_IDLE = 64  # idle connections kept per origin


def _bad_header(headers: CIMultiDict[str]) -> str:
    for name, value in headers.items():
        if any(c in name for c in "\r\n:") or "\r" in value or "\n" in value:
            return name
    return "?"


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
