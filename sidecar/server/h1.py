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
import contextlib

from sidecar.server import memory
from sidecar.server.h1_connection import _Connection
from sidecar.server.h1_limits import (
    BACKLOG,
    BODY_MIN_RATE,
    BODY_TIMEOUT_S,
    BUSY_RETRY_AFTER,
    HEAD_TIMEOUT_S,
    HIGH_WATER,
    IDLE_TIMEOUT_S,
    MAX_CONNECTIONS,
    MAX_HEAD_BYTES,
    TRIM_DELAY_S,
)
from sidecar.server.h1_request import ErrorReply, Handler, Request
from sidecar.server.h1_wire import HeaderError

__all__ = [
    "BUSY_RETRY_AFTER",
    "HEAD_TIMEOUT_S",
    "HIGH_WATER",
    "MAX_HEAD_BYTES",
    "ErrorReply",
    "Handler",
    "HeaderError",
    "Request",
    "Server",
]


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
