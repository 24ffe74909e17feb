"""One upstream response, fed by its connection and read by the pipeline.

The body is handed over as it arrives, and the two sides meet here: the
connection pushes pieces in (decoding them if compressed), the reader pulls
them out, and the buffer in between is what pauses the socket when the reader
is slower than the upstream.
"""

from __future__ import annotations

import asyncio
import collections
import zlib
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from multidict import CIMultiDict, CIMultiDictProxy

from sidecar.upstream.h1_errors import ProtocolError

if TYPE_CHECKING:
    from sidecar.upstream.h1_connection import _Connection

HIGH_WATER = 256 * 1024  # buffered body bytes before the socket is paused


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
