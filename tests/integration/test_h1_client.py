"""The hand-written HTTP/1.1 client against real loopback servers that misbehave on purpose.

`sidecar.upstream.h1` replaces aiohttp's client on the hop to the provider, so every
promise aiohttp used to keep for us is now ours: keep-alive reuse, framing (length,
chunked, read-until-close), decoding, back-pressure, timeouts, header injection,
TLS verification, and clean-up on close and cancellation. These tests speak raw bytes
over real sockets so that each failure mode can be produced exactly.
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import os
import socket
import ssl
import sys
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from multidict import CIMultiDict

from sidecar.bundle.snapshot import UpstreamSpec
from sidecar.upstream import h1, h1_connection, h1_response
from sidecar.upstream.h1 import (
    ConnectError,
    Disconnected,
    Pool,
    ProtocolError,
    Response,
    UpstreamError,
)
from sidecar.upstream.http import HttpTransport

# --- a raw loopback server -------------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]
Request = tuple[bytes, bytes]  # the head (request line and headers, with the blank line), body


class RawServer:
    """Runs `handler(reader, writer, index)` per accepted connection; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.connections = 0
        self.errors: list[BaseException] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self, ssl_context: ssl.SSLContext | None) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self.connections
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handler(reader, writer, index)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client went away: expected in most of these tests
        except asyncio.CancelledError:
            pass  # torn down at the end of the test (3.11's stream callback logs a re-raise)
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


class Serve(Protocol):
    async def __call__(
        self, handler: Handler, ssl_context: ssl.SSLContext | None = None
    ) -> RawServer: ...


class MakePool(Protocol):
    def __call__(
        self,
        port: int,
        *,
        host: str = "127.0.0.1",
        tls: bool = False,
        read_timeout: float = 5.0,
    ) -> Pool: ...


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[RawServer] = []

    async def start(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> RawServer:
        server = RawServer(handler)
        await server.start(ssl_context)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.aclose()
    errors = [exc for server in servers for exc in server.errors]
    assert not errors, f"a test server handler failed: {errors!r}"


@pytest.fixture
def make_pool() -> Iterator[MakePool]:
    pools: list[Pool] = []

    def build(
        port: int,
        *,
        host: str = "127.0.0.1",
        tls: bool = False,
        read_timeout: float = 5.0,
    ) -> Pool:
        pool = Pool(host, port, tls=tls, connect_timeout=2.0, read_timeout=read_timeout)
        pools.append(pool)
        return pool

    yield build
    for pool in pools:
        pool.close()


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """One request off the wire, or None when the client closed between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length)


async def until_eof(reader: asyncio.StreamReader) -> None:
    """Wait for the client to end the connection (FIN or RST)."""
    try:
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass


def ok(body: bytes = b"ok", *extra: str) -> bytes:
    head = "".join(f"{line}\r\n" for line in extra)
    return b"HTTP/1.1 200 OK\r\n%bContent-Length: %d\r\n\r\n%b" % (head.encode(), len(body), body)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def keep_answering(response: bytes = ok()) -> Handler:
    """Answer every request on every connection with the same bytes, keep-alive."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        while await read_request(reader) is not None:
            writer.write(response)
            await writer.drain()

    return handler


def no_headers() -> CIMultiDict[str]:
    return CIMultiDict()


async def post(pool: Pool, target: str = "/") -> Response:
    return await pool.request("POST", target, no_headers(), b"{}")


# --- keep-alive and the bytes on the wire -----------------------------------------------------


async def test_keep_alive_reuses_one_connection_and_sends_the_request_verbatim(
    serve: Serve, make_pool: MakePool
) -> None:
    seen: list[Request] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        while (request := await read_request(reader)) is not None:
            seen.append(request)
            writer.write(ok(b"reply %d" % len(seen), "Content-Type: text/plain"))
            await writer.drain()

    server = await serve(handler)
    pool = make_pool(server.port)
    sent: list[tuple[str, bytes]] = []
    for i in range(3):
        body = b'{"n": %d, "text": "caf\xc3\xa9"}' % i
        headers: CIMultiDict[str] = CIMultiDict(
            [
                ("Authorization", "Bearer sk-test"),
                ("X-Trace", f"t{i}"),
                ("X-Multi", "a"),
                ("x-multi", "b"),
            ]
        )
        target = f"/v1/chat/completions?i={i}"
        resp = await pool.request("POST", target, headers, body)
        assert resp.status == 200
        assert resp.headers["content-type"] == "text/plain"  # case-insensitive
        assert resp.headers["CONTENT-LENGTH"] == "7"
        assert await resp.read() == b"reply %d" % (i + 1)
        assert not resp.decoded
        sent.append((target, body))

    assert server.connections == 1
    assert len(seen) == 3
    for (target, body), (head, got_body) in zip(sent, seen, strict=True):
        n = target[-1]
        expected = (
            f"POST {target} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\n"
            "Authorization: Bearer sk-test\r\n"
            f"X-Trace: t{n}\r\n"
            "X-Multi: a\r\n"
            "x-multi: b\r\n"
            f"Content-Length: {len(body)}\r\n"
            "\r\n"
        ).encode()
        assert head == expected
        assert got_body == body


@pytest.mark.parametrize("server_closes_socket", [True, False])
async def test_connection_close_from_the_server_means_a_new_connection_next_time(
    serve: Serve, make_pool: MakePool, server_closes_socket: bool
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while await read_request(reader) is not None:
            writer.write(ok(b"conn %d" % n, "Connection: close"))
            await writer.drain()
            if server_closes_socket:
                return  # the wrapper closes the socket
            # else: the server said close but keeps the socket; the client must not reuse it

    server = await serve(handler)
    pool = make_pool(server.port)
    for n in range(3):
        resp = await post(pool)
        assert await resp.read() == b"conn %d" % n
    assert server.connections == 3


async def test_the_host_header_omits_the_default_port() -> None:
    assert Pool("api.example", 80, tls=False, connect_timeout=1, read_timeout=1).host_header == (
        "api.example"
    )
    assert Pool("api.example", 443, tls=False, connect_timeout=1, read_timeout=1).host_header == (
        "api.example:443"
    )
    assert Pool("::1", 8080, tls=False, connect_timeout=1, read_timeout=1).host_header == (
        "[::1]:8080"
    )


async def test_http_transport_prefixes_the_path_and_closes_its_pool(serve: Serve) -> None:
    seen: list[Request] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        while (request := await read_request(reader)) is not None:
            seen.append(request)
            writer.write(ok(b"{}", "Content-Type: application/json"))
            await writer.drain()

    server = await serve(handler)
    spec = UpstreamSpec(
        name="up", kind="http", provider=None, prefix=f"http://127.0.0.1:{server.port}/base/"
    )
    transport = HttpTransport(spec)
    try:
        resp = await transport.send("POST", "/v1/messages", no_headers(), b"{}")
        assert await resp.read() == b"{}"
        assert seen[0][0].startswith(b"POST /base/v1/messages HTTP/1.1\r\n")
        assert not transport.closed
    finally:
        await transport.close()
    assert transport.closed


# --- body framing -----------------------------------------------------------------------------


async def test_chunked_body_streams_piece_by_piece_while_the_server_holds_back(
    serve: Serve, make_pool: MakePool
) -> None:
    gate = asyncio.Event()
    first, rest = b"data: first\n\n", [b"data: second\n\n", b"data: third\n\n"]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        while await read_request(reader) is not None:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + chunk(first)
            )
            await writer.drain()
            await gate.wait()
            gate.clear()
            writer.write(b"".join(chunk(piece) for piece in rest) + b"0\r\n\r\n")
            await writer.drain()

    server = await serve(handler)
    pool = make_pool(server.port)
    for _ in range(2):  # the second round runs on the same, reused connection
        resp = await post(pool)
        pieces: list[bytes] = []
        async with asyncio.timeout(2):  # buffering the whole body would deadlock here
            async for piece in resp.chunks():
                if not pieces:
                    assert not gate.is_set()  # the rest is still held back by the server
                    gate.set()
                pieces.append(piece)
        resp.release()
        assert pieces[0] == first
        assert len(pieces) >= 2
        assert b"".join(pieces) == first + b"".join(rest)
    assert server.connections == 1


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
    ],
)
@pytest.mark.parametrize("reader", ["read", "chunks"])
async def test_compressed_bodies_are_decoded(
    serve: Serve,
    make_pool: MakePool,
    encoding: str,
    compress: Callable[[bytes], bytes],
    reader: str,
) -> None:
    plain = b'{"choices": [{"text": "' + b"hello " * 2000 + b'"}]}'
    packed = compress(plain)
    assert len(packed) < len(plain) // 10
    # Chunked, in pieces that split the compressed stream at arbitrary points.
    wire = b"".join(chunk(packed[i : i + 97]) for i in range(0, len(packed), 97)) + b"0\r\n\r\n"
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Encoding: %b\r\nTransfer-Encoding: chunked\r\n\r\n%b"
        % (encoding.encode(), wire)
    )
    server = await serve(keep_answering(response))
    pool = make_pool(server.port)
    resp = await post(pool)
    assert resp.decoded
    if reader == "read":
        body = await resp.read()
    else:
        body = b"".join([piece async for piece in resp.chunks()])
        resp.release()
    assert body == plain


async def test_an_uncompressed_body_is_not_marked_decoded(
    serve: Serve, make_pool: MakePool
) -> None:
    server = await serve(keep_answering(ok(b"plain", "Content-Encoding: identity")))
    resp = await post(make_pool(server.port))
    assert not resp.decoded
    assert await resp.read() == b"plain"


async def test_a_corrupt_gzip_body_is_a_protocol_error(serve: Serve, make_pool: MakePool) -> None:
    server = await serve(keep_answering(ok(b"\x1f\x8bnot really gzip", "Content-Encoding: gzip")))
    resp = await post(make_pool(server.port))
    with pytest.raises(ProtocolError, match="corrupt"):
        await resp.read()


async def test_a_truncated_gzip_body_is_a_protocol_error(serve: Serve, make_pool: MakePool) -> None:
    plain = os.urandom(6000).hex().encode()
    packed = gzip.compress(plain)[:-1000]  # framing says complete; the gzip stream is not
    server = await serve(keep_answering(ok(packed, "Content-Encoding: gzip")))
    resp = await post(make_pool(server.port))
    body, error = b"", None
    try:
        body = await resp.read()
    except ProtocolError as exc:
        error = exc
    assert error is not None, (
        f"read() returned {len(body)} of {len(plain)} bytes of a truncated gzip stream"
    )


@pytest.mark.parametrize("reader", ["read", "chunks"])
async def test_an_unsupported_content_encoding_is_a_protocol_error(
    serve: Serve, make_pool: MakePool, reader: str
) -> None:
    server = await serve(keep_answering(ok(b"\x8b\x02\x80hello\x03", "Content-Encoding: br")))
    pool = make_pool(server.port)
    resp = await post(pool)
    with pytest.raises(ProtocolError, match="br"):
        async with asyncio.timeout(2):
            if reader == "read":
                await resp.read()
            else:
                async for _ in resp.chunks():
                    pass
    resp.release()
    # The failed response's connection is not reused.
    (await post(pool)).close()
    assert server.connections == 2


@pytest.mark.parametrize("reader", ["read", "chunks"])
async def test_a_body_without_length_or_chunking_ends_when_the_server_closes(
    serve: Serve, make_pool: MakePool, reader: str
) -> None:
    parts = [b"part one, ", b"part two, ", b"the end"]

    async def handler(reader_: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader_)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.02)
        # returning closes the socket: that ends the body

    server = await serve(handler)
    pool = make_pool(server.port)
    for _ in range(2):
        resp = await post(pool)
        async with asyncio.timeout(2):
            if reader == "read":
                body = await resp.read()
            else:
                body = b"".join([piece async for piece in resp.chunks()])
                resp.release()
        assert body == b"".join(parts)
    assert server.connections == 2  # a close-delimited connection is never reused


# --- connections that end early or speak something else --------------------------------------


async def test_a_close_mid_body_is_disconnected_and_the_pool_recovers(
    serve: Serve, make_pool: MakePool
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n == 0:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly ten b")
            await writer.drain()
            return  # close with 990 bytes owed
        await keep_answering(ok(b"healthy"))(reader, writer, n)

    server = await serve(handler)
    pool = make_pool(server.port)
    resp = await post(pool)
    assert resp.status == 200
    with pytest.raises(Disconnected):
        async with asyncio.timeout(2):
            await resp.read()
    resp = await post(pool)
    assert await resp.read() == b"healthy"
    assert server.connections == 2


async def test_a_close_mid_chunked_stream_is_disconnected(
    serve: Serve, make_pool: MakePool
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(b"one"))
        await writer.drain()
        await asyncio.sleep(0.05)

    server = await serve(handler)
    resp = await post(make_pool(server.port))
    pieces: list[bytes] = []
    with pytest.raises(Disconnected):
        async with asyncio.timeout(2):
            async for piece in resp.chunks():
                pieces.append(piece)
    assert pieces == [b"one"]


async def test_a_close_before_any_response_is_disconnected_and_the_pool_recovers(
    serve: Serve, make_pool: MakePool
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n == 0:
            await read_request(reader)
            return  # close without a byte of response
        await keep_answering(ok(b"healthy"))(reader, writer, n)

    server = await serve(handler)
    pool = make_pool(server.port)
    with pytest.raises(Disconnected):
        async with asyncio.timeout(2):
            await post(pool)
    resp = await post(pool)
    assert await resp.read() == b"healthy"
    assert server.connections == 2


@pytest.mark.parametrize(
    "garbage",
    [b"SSH-2.0-OpenSSH_9.6\r\n", b"hello, this is not HTTP\r\n\r\n", b"HTTP/1.1 abc OK\r\n\r\n"],
)
async def test_garbage_instead_of_http_is_a_protocol_error(
    serve: Serve, make_pool: MakePool, garbage: bytes
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        writer.write(garbage)
        await writer.drain()
        await until_eof(reader)  # keep the socket open: the error must come from parsing

    server = await serve(handler)
    started = time.monotonic()
    with pytest.raises(ProtocolError, match="malformed"):
        await post(make_pool(server.port))
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(("count", "fails"), [(60, False), (70, True)])
async def test_response_headers_beyond_64_kib_are_a_protocol_error(
    serve: Serve, make_pool: MakePool, count: int, fails: bool
) -> None:
    # Each header counts len(name) + len(value) + 4 = 8 + 1000 + 4 bytes.
    pad = [f"X-Pad-{i:02d}: {'a' * 1000}" for i in range(count)]
    assert (count * 1012 > h1.MAX_HEAD_BYTES) is fails

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        writer.write(ok(b"fine", *pad))
        await writer.drain()
        await until_eof(reader)

    server = await serve(handler)
    pool = make_pool(server.port)
    async with asyncio.timeout(2):
        if fails:
            with pytest.raises(ProtocolError):
                await post(pool)
        else:
            resp = await post(pool)
            assert resp.headers["x-pad-59"] == "a" * 1000
            assert await resp.read() == b"fine"


async def test_an_unterminated_header_line_beyond_64_kib_is_a_protocol_error(
    serve: Serve, make_pool: MakePool
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nX-Endless: " + b"a" * (2 * h1.MAX_HEAD_BYTES))
        await writer.drain()
        await until_eof(reader)

    server = await serve(handler)
    pool = make_pool(server.port, read_timeout=0.4)
    # 128 KiB of head arrived: the limit should end the call with a ProtocolError. Instead
    # the bytes pile up in the parser until the read timeout fires (or forever, if the
    # upstream keeps trickling).
    try:
        async with asyncio.timeout(3):  # a guard against hanging
            await post(pool)
    except OSError as exc:  # TimeoutError is one
        error: OSError = exc
    else:
        pytest.fail("a response with a 128 KiB header line was accepted")
    assert isinstance(error, ProtocolError), f"expected a ProtocolError, got {error!r}"


# --- timeouts ---------------------------------------------------------------------------------


async def test_a_silent_server_is_a_timeout_and_the_connection_is_dropped(
    serve: Serve, make_pool: MakePool
) -> None:
    ended = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        await until_eof(reader)
        ended.set()

    server = await serve(handler)
    pool = make_pool(server.port, read_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="no response from the upstream within"):
        async with asyncio.timeout(3):  # a guard: without a read timeout this would hang
            await post(pool)
    elapsed = time.monotonic() - started
    assert 0.2 < elapsed < 2
    await asyncio.wait_for(ended.wait(), 2)


async def test_a_stream_that_stalls_after_the_first_chunk_is_a_timeout(
    serve: Serve, make_pool: MakePool
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(b"one"))
        await writer.drain()
        await until_eof(reader)

    server = await serve(handler)
    pool = make_pool(server.port, read_timeout=0.3)
    resp = await post(pool)
    pieces: list[bytes] = []
    stalled_at = 0.0
    with pytest.raises(TimeoutError, match="no data from the upstream"):
        async with asyncio.timeout(3):  # a guard: without a read timeout this would hang
            async for piece in resp.chunks():
                pieces.append(piece)
                stalled_at = time.monotonic()
    assert pieces == [b"one"]
    assert 0.1 < time.monotonic() - stalled_at < 2


async def test_keep_alive_calls_share_one_silence_timer(
    serve: Serve, make_pool: MakePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call on a reused connection arms no timer of its own while the one left armed
    by the call before fires soon enough for it: a timer costs a few µs a call."""
    server = await serve(keep_answering())
    pool = make_pool(server.port, read_timeout=30.0)
    loop = asyncio.get_running_loop()
    armed: list[float] = []
    call_at = loop.call_at

    def counting_call_at(when: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        if getattr(callback, "__name__", "") == "_check_silence":
            armed.append(when)
        return call_at(when, callback, *args)

    monkeypatch.setattr(loop, "call_at", counting_call_at)
    for _ in range(5):
        resp = await post(pool)
        assert await resp.read() == b"ok"
    monkeypatch.undo()
    assert server.connections == 1
    assert len(armed) == 1


async def test_a_shorter_timeout_on_a_reused_connection_still_fires_in_time(
    serve: Serve, make_pool: MakePool
) -> None:
    """The timer a long first call left armed must not stand in for a shorter one."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        writer.write(ok())
        await writer.drain()
        await read_request(reader)  # the second call gets no answer
        await until_eof(reader)

    server = await serve(handler)
    pool = make_pool(server.port, read_timeout=30.0)
    resp = await post(pool)
    assert await resp.read() == b"ok"
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"no response from the upstream within 0\.3 s"):
        async with asyncio.timeout(3):  # a guard: a 30 s timer would end the test here
            await pool.request("POST", "/", no_headers(), b"{}", first_byte_timeout=0.3)
    assert 0.2 < time.monotonic() - started < 2
    assert server.connections == 1


async def test_a_slow_but_steady_stream_is_not_a_timeout(serve: Serve, make_pool: MakePool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(6):
            await asyncio.sleep(0.1)
            writer.write(chunk(b"%d" % i))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await until_eof(reader)

    server = await serve(handler)
    # The whole body takes about 0.6 s, twice the timeout; no gap between bytes reaches it.
    resp = await post(make_pool(server.port, read_timeout=0.3))
    assert await resp.read() == b"012345"


# --- connecting -------------------------------------------------------------------------------


async def test_nothing_listening_is_a_connect_error_naming_the_origin(make_pool: MakePool) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    pool = make_pool(port)
    with pytest.raises(ConnectError) as info:
        await post(pool)
    assert f"127.0.0.1:{port}" in str(info.value)
    assert isinstance(info.value, OSError)


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        ("/", [("X-Note", "a\r\nX-Injected: 1")]),
        ("/", [("X-Note", "a\nX-Injected: 1")]),
        ("/", [("X-Note", "a\rX-Injected: 1")]),
        ("/", [("X-Evil\r\nX-Injected", "1")]),
        ("/ HTTP/1.1\r\nX-Injected: 1\r\nX:", []),
        ("/", [("X-Note", "snowman \u2603")]),
    ],
)
async def test_a_header_that_would_inject_lines_is_refused_before_anything_is_sent(
    serve: Serve, make_pool: MakePool, target: str, headers: list[tuple[str, str]]
) -> None:
    seen: list[Request] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        while (request := await read_request(reader)) is not None:
            seen.append(request)
            writer.write(ok())
            await writer.drain()

    server = await serve(handler)
    pool = make_pool(server.port)
    with pytest.raises(UpstreamError):
        await pool.request("POST", target, CIMultiDict(headers), b"{}")
    await asyncio.sleep(0.05)
    assert server.connections == 0
    assert seen == []
    # The pool is unharmed, and nothing of the refused request leaks into the next one.
    resp = await post(pool)
    assert await resp.read() == b"ok"
    assert len(seen) == 1
    assert b"Injected" not in seen[0][0]


# --- interim responses ------------------------------------------------------------------------


@pytest.mark.parametrize("split", [False, True])
async def test_interim_1xx_responses_are_skipped(
    serve: Serve, make_pool: MakePool, split: bool
) -> None:
    interim = [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
    ]
    final = ok(b"final", "X-Final: yes")

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        while await read_request(reader) is not None:
            for part in [*interim, final] if split else [b"".join([*interim, final])]:
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.02)

    server = await serve(handler)
    pool = make_pool(server.port)
    for _ in range(2):
        resp = await post(pool)
        assert resp.status == 200
        assert resp.headers["x-final"] == "yes"
        assert "link" not in resp.headers  # the interim response's headers are not the final's
        assert await resp.read() == b"final"
    assert server.connections == 1


# --- back-pressure ----------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_slow_reader_pauses_the_socket_instead_of_buffering(
    serve: Serve, make_pool: MakePool, chunked: bool
) -> None:
    payload = os.urandom(4 * 1024 * 1024)
    block = 64 * 1024

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        if chunked:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(payload))
        for i in range(0, len(payload), block):
            data = payload[i : i + block]
            writer.write(chunk(data) if chunked else data)
            await writer.drain()
        if chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        await until_eof(reader)

    server = await serve(handler)
    resp = await post(make_pool(server.port))
    received = bytearray()
    peak = resp._buffered
    async with asyncio.timeout(8):
        async for piece in resp.chunks():
            peak = max(peak, resp._buffered + len(piece))
            received += piece
            await asyncio.sleep(0.003)  # a reader much slower than loopback
    resp.release()
    assert bytes(received) == payload
    # The reader really was slower (the buffer reached the high-water mark) ...
    assert peak > h1.HIGH_WATER
    # ... and the buffer stayed near it instead of growing towards the 4 MiB body.
    assert peak < h1.HIGH_WATER + 1024 * 1024


async def test_a_paused_stream_does_not_spin_the_event_loop(
    serve: Serve, make_pool: MakePool
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (16 * 1024 * 1024))
        for _ in range(256):
            writer.write(b"x" * 65536)
            await writer.drain()  # blocks for good once the client pauses
        await until_eof(reader)

    server = await serve(handler)
    resp = await post(make_pool(server.port, read_timeout=0.1))
    pieces = resp.chunks()
    await anext(pieces)
    await asyncio.sleep(0.1)  # the buffer passes the high-water mark; the socket pauses
    if resp._buffered <= h1.HIGH_WATER:
        pytest.fail("setup: the stream never reached the high-water mark")

    # Count calls into h1's code while nothing happens: the consumer is busy elsewhere for
    # 0.5 s (five read timeouts) and the socket is paused. A timer that re-checks once per
    # timeout would run a handful of times; a spinning one runs thousands of times.
    calls = 0
    client = {module.__file__ for module in (h1, h1_connection, h1_response)}

    def count(frame: FrameType, event: str, arg: object) -> None:
        nonlocal calls
        if event == "call" and frame.f_code.co_filename in client:
            calls += 1

    cpu = time.process_time()
    previous = sys.getprofile()
    sys.setprofile(count)
    try:
        await asyncio.sleep(0.5)
    finally:
        sys.setprofile(previous)
    busy = time.process_time() - cpu
    resp.close()
    assert calls < 50, f"h1 ran {calls} calls and the process {busy:.2f} s of CPU in 0.5 s idle"


# --- TLS --------------------------------------------------------------------------------------


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "localhost.pem", tmp_path / "localhost.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
async def https(tmp_path: Path, serve: Serve) -> tuple[RawServer, Path]:
    cert_path, key_path = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return await serve(keep_answering(ok(b"secure")), context), cert_path


async def test_tls_to_a_trusted_certificate(
    https: tuple[RawServer, Path], make_pool: MakePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, cert_path = https
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))
    pool = make_pool(server.port, host="localhost", tls=True)
    for _ in range(2):
        resp = await post(pool)
        assert resp.status == 200
        assert await resp.read() == b"secure"
    assert server.connections == 1


async def test_tls_to_an_untrusted_certificate_is_a_connect_error(
    https: tuple[RawServer, Path], make_pool: MakePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = https
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    pool = make_pool(server.port, host="localhost", tls=True)
    with pytest.raises(ConnectError) as info:
        await post(pool)
    assert "certificate verify failed" in str(info.value).lower()
    assert f"localhost:{server.port}" in str(info.value)
    assert server.connections == 0  # the handshake never completed


# --- closing, releasing, cancelling -----------------------------------------------------------


async def test_closing_the_pool_drops_idle_connections_and_refuses_new_requests(
    serve: Serve, make_pool: MakePool
) -> None:
    ended = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await keep_answering()(reader, writer, n)
        ended.set()

    server = await serve(handler)
    pool = make_pool(server.port)
    resp = await post(pool)
    assert await resp.read() == b"ok"  # the connection is now idle in the pool
    assert not ended.is_set()
    assert not pool.closed
    pool.close()
    assert pool.closed
    await asyncio.wait_for(ended.wait(), 2)
    with pytest.raises(ConnectError, match="closed"):
        await post(pool)
    assert server.connections == 1


async def test_closing_the_pool_ends_a_response_in_flight(
    serve: Serve, make_pool: MakePool
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(b"one"))
        await writer.drain()
        await until_eof(reader)

    server = await serve(handler)
    pool = make_pool(server.port)
    resp = await post(pool)
    pieces = resp.chunks()
    assert await anext(pieces) == b"one"
    pool.close()
    with pytest.raises(UpstreamError):
        async with asyncio.timeout(2):
            await anext(pieces)


async def test_an_idle_connection_the_server_closed_is_not_reused(
    serve: Serve, make_pool: MakePool
) -> None:
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(ok(b"conn %d" % n))  # keep-alive allowed ...
        await writer.drain()
        if n == 0:
            writer.close()  # ... but the server's idle timeout ends it right away
            await writer.wait_closed()
            closed.set()
            return
        await keep_answering(ok(b"conn %d" % n))(reader, writer, n)

    server = await serve(handler)
    pool = make_pool(server.port)
    assert await (await post(pool)).read() == b"conn 0"
    await asyncio.wait_for(closed.wait(), 2)
    await asyncio.sleep(0.05)  # the client sees the FIN
    assert await (await post(pool)).read() == b"conn 1"
    assert server.connections == 2


async def test_an_idle_connection_past_the_keep_alive_limit_is_not_reused(
    serve: Serve, make_pool: MakePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(h1, "IDLE_KEEPALIVE_S", 0.1)
    ended = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await keep_answering()(reader, writer, n)
        if n == 0:
            ended.set()

    server = await serve(handler)
    pool = make_pool(server.port)
    assert await (await post(pool)).read() == b"ok"
    assert await (await post(pool)).read() == b"ok"
    assert server.connections == 1  # fresh enough: reused
    await asyncio.sleep(0.2)
    assert await (await post(pool)).read() == b"ok"
    assert server.connections == 2  # too old: dropped and replaced
    await asyncio.wait_for(ended.wait(), 2)


@pytest.mark.parametrize("how", ["release", "close"])
async def test_an_unfinished_response_is_never_put_back(
    serve: Serve, make_pool: MakePool, how: str
) -> None:
    ended = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n == 0:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
            await writer.drain()
            await until_eof(reader)
            ended.set()
            return
        await keep_answering()(reader, writer, n)

    server = await serve(handler)
    pool = make_pool(server.port)
    resp = await post(pool)
    assert await anext(resp.chunks()) == b"0123456789"
    if how == "release":
        resp.release()
    else:
        resp.close()
    await asyncio.wait_for(ended.wait(), 2)
    resp = await post(pool)
    assert await resp.read() == b"ok"
    assert server.connections == 2


async def test_cancelling_a_request_closes_its_connection(
    serve: Serve, make_pool: MakePool
) -> None:
    got_request = asyncio.Event()
    ended = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n == 0:
            await read_request(reader)
            got_request.set()
            await until_eof(reader)  # never answer
            ended.set()
            return
        await keep_answering(ok(b"second"))(reader, writer, n)

    server = await serve(handler)
    pool = make_pool(server.port)
    task = asyncio.create_task(post(pool))
    await asyncio.wait_for(got_request.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(ended.wait(), 2)
    resp = await post(pool)
    assert await resp.read() == b"second"
    assert server.connections == 2  # the cancelled connection was not handed out again


# --- the connection cap -----------------------------------------------------------------------


def capped_pool(port: int, cap: int, connect_timeout: float = 2.0) -> Pool:
    return Pool(
        "127.0.0.1",
        port,
        tls=False,
        connect_timeout=connect_timeout,
        read_timeout=5.0,
        max_connections=cap,
    )


def held_answers(release: asyncio.Event, *, close: bool = False) -> Handler:
    """Answer each request once `release` is set; optionally close after each answer."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        while await read_request(reader) is not None:
            await release.wait()
            writer.write(ok(b"done", "Connection: close") if close else ok(b"done"))
            await writer.drain()
            if close:
                return

    return handler


async def test_a_cancelled_waiter_gives_its_turn_to_the_next(serve: Serve) -> None:
    release = asyncio.Event()
    server = await serve(held_answers(release))
    pool = capped_pool(server.port, 1)
    try:
        first = asyncio.create_task(post(pool))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(post(pool))
        third = asyncio.create_task(post(pool))
        await asyncio.sleep(0.05)
        second.cancel()
        release.set()
        for task in (first, third):
            assert await (await task).read() == b"done"
        with pytest.raises(asyncio.CancelledError):
            await second
        assert server.connections == 1
        assert pool._open == 1 and not pool._waiters
    finally:
        pool.close()


async def test_a_connection_the_server_closes_frees_its_slot_for_a_waiter(serve: Serve) -> None:
    release = asyncio.Event()
    server = await serve(held_answers(release, close=True))
    pool = capped_pool(server.port, 2)
    try:
        tasks = [asyncio.create_task(post(pool)) for _ in range(5)]
        await asyncio.sleep(0.05)
        assert server.connections == 2  # three calls wait for a slot
        release.set()
        for task in tasks:
            assert await (await task).read() == b"done"
        assert server.connections == 5  # each closed after one answer
        await asyncio.sleep(0.05)
        assert pool._open == 0
    finally:
        pool.close()


async def test_a_wait_beyond_the_connect_timeout_is_pool_exhausted(serve: Serve) -> None:
    release = asyncio.Event()
    server = await serve(held_answers(release))
    pool = capped_pool(server.port, 1, connect_timeout=0.1)
    try:
        first = asyncio.create_task(post(pool))
        await asyncio.sleep(0.05)
        with pytest.raises(h1.PoolExhausted) as info:
            await post(pool)
        assert "all 1 connections to 127.0.0.1" in str(info.value)
        release.set()
        assert await (await first).read() == b"done"
        assert await (await post(pool)).read() == b"done"  # the slot was never lost
        assert server.connections == 1
    finally:
        pool.close()


async def test_closing_the_pool_fails_the_calls_waiting_for_a_connection(serve: Serve) -> None:
    release = asyncio.Event()
    server = await serve(held_answers(release))
    pool = capped_pool(server.port, 1)
    first = asyncio.create_task(post(pool))
    await asyncio.sleep(0.05)
    waiting = asyncio.create_task(post(pool))
    await asyncio.sleep(0.05)
    pool.close()
    with pytest.raises(ConnectError):
        await waiting
    with pytest.raises(UpstreamError):
        await first
    release.set()
