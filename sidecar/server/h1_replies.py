"""Writing a handler's reply onto its connection: whole, streamed, or cut short.

Framing a reply (length or chunks, keep-alive or close, no body where HTTP
allows none) and pacing a stream to a slow caller is a concern of its own,
apart from parsing requests and keeping the connection's deadlines; the
connection class takes it in as a base.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from sidecar.replies import Reply, StreamReply
from sidecar.server.h1_request import Request
from sidecar.server.h1_wire import HeaderError, _head

if TYPE_CHECKING:
    from sidecar.server.h1 import Server

log = logging.getLogger("sidecar.http")

# Statuses that never carry a body (RFC 9110 6.4.1), whatever the handler hands over.
_NO_BODY = frozenset({204, 304})


class _ReplyWriter:
    """The part of a connection that writes replies; the connection holds the state."""

    _server: Server
    _loop: asyncio.AbstractEventLoop
    _transport: asyncio.Transport | None
    _task: asyncio.Task[None] | None
    _lost: bool
    _write_paused: bool
    _drain: asyncio.Future[None] | None
    _streaming: StreamReply | None
    _stream_chunked: bool

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

    def _write_refusal(self, status: int, message: str) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        reply = self._server.error_reply(status, message, None)
        framing = f"content-length: {len(reply.body)}\r\nconnection: close\r\n\r\n"
        transport.write(_head(status, reply.headers, framing) + reply.body)

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
