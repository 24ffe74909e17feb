"""The proxy listener's HTTP/1.1 server (`sidecar.server.h1`), attacked over real sockets.

`h1.Server` replaced aiohttp's web server on the proxy listener, so every promise
aiohttp used to keep is now the sidecar's own: framing, keep-alive, pipelining,
size limits, back-pressure, cancellation on disconnect, shutdown. These tests
speak raw bytes over loopback (and, for a few end-to-end checks, the real
`openai` SDK through a full sidecar) and try to break each promise listed in the
module docstring of `h1.py`.

Tests marked `xfail(strict=True)` document bugs found here; the reason says what
is wrong. When a bug is fixed its test starts passing and strict xfail turns that
into a failure, so the marker must then be removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest
from multidict import CIMultiDict

from fakes.upstream import FakeUpstream
from integration.conftest import MakeSidecar, Running, openai_bundle
from sidecar.replies import Reply, StreamReply
from sidecar.server import h1
from sidecar.server.h1 import Request, Server
from sidecar.server.http import error_reply

T = 5.0  # the longest any single wait in this file may take


# --- a raw HTTP/1.1 client -------------------------------------------------------------------


@dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: CIMultiDict[str]
    head: bytes
    body: bytes = b""
    complete: bool = True  # the body's framing ended cleanly (chunk terminator seen)

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """One raw connection; parses responses itself, every read bounded by a timeout."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int, **kw: Any) -> Client:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, **kw), T)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), T)

    async def read_head(self, within: float = T) -> Response:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), within)
        status_line, *lines = head[:-4].split(b"\r\n")
        match = re.fullmatch(rb"HTTP/(1\.[01]) ([0-9]{3}) ([\x21-\x7e][\x20-\x7e]*)", status_line)
        assert match is not None, f"invalid status line {status_line!r}"
        headers: CIMultiDict[str] = CIMultiDict()
        for line in lines:
            name, sep, value = line.partition(b":")
            assert sep and name and name == name.strip(), f"invalid header line {line!r}"
            headers.add(name.decode("latin-1"), value.strip().decode("latin-1"))
        return Response(match[1].decode(), int(match[2]), match[3].decode("latin-1"), headers, head)

    async def read_response(self, *, head_request: bool = False, within: float = T) -> Response:
        resp = await self.read_head(within)
        if 100 <= resp.status < 200 or head_request or resp.status in (204, 304):
            return resp
        if resp.headers.get("transfer-encoding", "").lower() == "chunked":
            assert "content-length" not in resp.headers
            resp.body, resp.complete = await self.read_chunked(within)
        elif "content-length" in resp.headers:
            length = int(resp.headers["content-length"])
            resp.body = await asyncio.wait_for(self.reader.readexactly(length), within)
        else:  # close-delimited
            resp.body = await self.read_to_eof(within)
        return resp

    async def read_chunked(self, within: float = T) -> tuple[bytes, bool]:
        """The body, and whether it ended with a clean terminator."""
        pieces: list[bytes] = []
        try:
            while True:
                line = await asyncio.wait_for(self.reader.readuntil(b"\r\n"), within)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while await asyncio.wait_for(self.reader.readuntil(b"\r\n"), within) != b"\r\n":
                        pass  # trailers
                    return b"".join(pieces), True
                data = await asyncio.wait_for(self.reader.readexactly(size + 2), within)
                assert data[-2:] == b"\r\n", f"bad chunk framing {data[-10:]!r}"
                pieces.append(data[:-2])
        except (asyncio.IncompleteReadError, ConnectionError):
            return b"".join(pieces), False

    async def read_to_eof(self, within: float = T) -> bytes:
        try:
            return await asyncio.wait_for(self.reader.read(), within)
        except ConnectionError:
            return b""

    async def closed(self, within: float = T) -> bool:
        """True once the server ends the connection (EOF or reset); asserts nothing else came."""
        try:
            rest = await asyncio.wait_for(self.reader.read(), within)
        except ConnectionError:
            return True
        except TimeoutError:
            return False
        assert rest == b"", f"unexpected bytes after the last response: {rest[:200]!r}"
        return True

    async def request(self, raw: bytes, **kw: Any) -> Response:
        await self.send(raw)
        return await self.read_response(**kw)

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.transport.abort()


def get(path: str = "/", *headers: str, version: str = "1.1", method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: test", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def post(path: str, body: bytes, *headers: str, version: str = "1.1") -> bytes:
    return (
        get(path, f"Content-Length: {len(body)}", *headers, version=version, method="POST") + body
    )


def chunked(path: str, pieces: list[bytes], *headers: str, ext: str = "") -> bytes:
    head = get(path, "Transfer-Encoding: chunked", *headers, method="POST")
    frames = b"".join(b"%x%s\r\n%s\r\n" % (len(p), ext.encode(), p) for p in pieces)
    return head + frames + b"0\r\n\r\n"


async def wait_until(predicate: Callable[[], bool], within: float = T, what: str = "") -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.005)


# --- servers and handlers ---------------------------------------------------------------------


@dataclass
class Served:
    server: Server
    host: str
    port: int

    async def connect(self, **kw: Any) -> Client:
        return await Client.connect(self.host, self.port, **kw)


@contextlib.asynccontextmanager
async def serving(
    handler: h1.Handler,
    *,
    max_body_bytes: int = 1 << 20,
    idle_timeout: float = 30.0,
    **limits: Any,
) -> AsyncIterator[Served]:
    server = Server(
        handler, error_reply, max_body_bytes=max_body_bytes, idle_timeout=idle_timeout, **limits
    )
    host, port = await server.start("127.0.0.1", 0)
    try:
        yield Served(server, host, port)
    finally:
        await server.stop(0)
        await asyncio.sleep(0.01)  # let the aborted connections unwind


def json_reply(payload: Any, status: int = 200) -> Reply:
    return Reply(
        status, CIMultiDict({"content-type": "application/json"}), json.dumps(payload).encode()
    )


class Echo:
    """Answers with what it was asked; records every request; 413 when the body is too large."""

    def __init__(self) -> None:
        self.seen: list[Request] = []

    async def __call__(self, request: Request) -> Reply:
        self.seen.append(request)
        if request.too_large:
            return json_reply({"too_large": True, "length": request.length}, 413)
        return json_reply(
            {
                "method": request.method,
                "path": request.path,
                "query": request.query,
                "version": request.version,
                "body": request.body.decode("latin-1"),
                "keep_alive": request.keep_alive,
                "length": request.length,
                "headers": [[k, v] for k, v in request.headers.items()],
            }
        )

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.seen]


@dataclass
class Stream:
    """A StreamReply whose generator reports what happened to it."""

    pieces: list[bytes] = field(default_factory=lambda: [b"one ", b"two ", b"three"])
    hold_before: int | None = None  # wait on `gate` before yielding piece number N
    fail_after: int | None = None  # raise after yielding this many pieces
    delay: float = 0.0
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    produced: int = 0  # bytes yielded
    yielded: int = 0
    started: bool = False
    cancelled: bool = False
    closed: bool = False  # GeneratorExit (aclose) reached the generator
    finished: bool = False
    done_calls: int = 0
    held: asyncio.Event = field(default_factory=asyncio.Event)

    def reply(self, status: int = 200, headers: CIMultiDict[str] | None = None) -> StreamReply:
        return StreamReply(
            status,
            headers if headers is not None else CIMultiDict({"content-type": "text/plain"}),
            self._chunks(),
            done=self._done,
        )

    def _done(self) -> None:
        self.done_calls += 1

    async def _chunks(self) -> AsyncIterator[bytes]:
        self.started = True
        try:
            for index, piece in enumerate(self.pieces):
                if index == self.hold_before:
                    self.held.set()
                    await self.gate.wait()
                if self.fail_after is not None and index == self.fail_after:
                    raise RuntimeError("the stream broke")
                if self.delay:
                    await asyncio.sleep(self.delay)
                self.produced += len(piece)
                self.yielded += 1
                yield piece
            self.finished = True
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        except GeneratorExit:
            self.closed = True
            raise

    @property
    def body(self) -> bytes:
        return b"".join(self.pieces)


def stream_handler(stream: Stream) -> h1.Handler:
    async def handler(request: Request) -> Reply | StreamReply:
        if request.path == "/stream":
            return stream.reply()
        return json_reply({"path": request.path})

    return handler


# --- keep-alive and pipelining ----------------------------------------------------------------


async def test_keep_alive_serves_many_requests_on_one_connection() -> None:
    echo = Echo()
    async with serving(echo) as s:
        client = await s.connect()
        for i in range(200):
            if i % 3 == 0:
                resp = await client.request(get(f"/get/{i}?n={i}"))
            elif i % 3 == 1:
                resp = await client.request(post(f"/post/{i}", b"x" * i))
            else:
                resp = await client.request(chunked(f"/chunked/{i}", [b"a", b"bc" * i]))
            assert resp.status == 200
            assert "connection" not in resp.headers
            data = resp.json()
            assert data["path"].endswith(f"/{i}")
            assert data["body"] == ("" if i % 3 == 0 else "x" * i if i % 3 == 1 else "a" + "bc" * i)
        assert len(s.server.connections) == 1
        assert len(echo.seen) == 200
        client.close()


async def test_pipelined_requests_are_answered_in_order() -> None:
    async def handler(request: Request) -> Reply:
        n = int(request.path.rsplit("/", 1)[1])
        await asyncio.sleep((n % 4) * 0.002)  # later ones would overtake if run concurrently
        return json_reply({"n": n, "body": request.body.decode()})

    async with serving(handler) as s:
        client = await s.connect()
        count = 60  # several times MAX_QUEUED, so reading pauses and resumes
        batch = b"".join(
            post(f"/r/{n}", f"body {n}".encode())
            if n % 2
            else chunked(f"/r/{n}", [b"body", f" {n}".encode()])
            for n in range(count)
        )
        await client.send(batch)  # one write
        for n in range(count):
            resp = await client.read_response()
            assert resp.status == 200
            assert resp.json() == {"n": n, "body": f"body {n}"}
        # the connection is still good afterwards
        assert (await client.request(post("/r/999", b"body 999"))).json()["n"] == 999
        client.close()


async def test_pipelined_stream_then_plain_request() -> None:
    stream = Stream(pieces=[b"chunk %d;" % i for i in range(20)], delay=0.002)
    async with serving(stream_handler(stream)) as s:
        client = await s.connect()
        await client.send(get("/stream") + get("/plain") + get("/stream2"))
        first = await client.read_response()
        assert first.status == 200
        assert first.headers["transfer-encoding"] == "chunked"
        assert first.body == stream.body and first.complete
        second = await client.read_response()
        assert second.json() == {"path": "/plain"}
        third = await client.read_response()
        assert third.json() == {"path": "/stream2"}
        assert stream.done_calls == 1
        client.close()


# --- HTTP/1.0 and Connection: close ----------------------------------------------------------


async def test_http10_request_without_keep_alive_is_closed_after_the_reply() -> None:
    echo = Echo()
    async with serving(echo) as s:
        client = await s.connect()
        resp = await client.request(get("/old", version="1.0"))
        assert resp.status == 200
        assert resp.headers["connection"] == "close"
        assert resp.json()["version"] == "1.0"
        assert await client.closed()


async def test_http10_keep_alive_is_honoured() -> None:
    echo = Echo()
    async with serving(echo) as s:
        client = await s.connect()
        for i in range(3):
            resp = await client.request(get(f"/old/{i}", "Connection: keep-alive", version="1.0"))
            assert resp.status == 200
            assert resp.headers["connection"].lower() == "keep-alive"
        assert echo.paths == ["/old/0", "/old/1", "/old/2"]
        client.close()


async def test_stream_to_http10_client_is_close_delimited() -> None:
    stream = Stream(pieces=[b"a" * 10, b"b" * 5000, b"c"])
    async with serving(stream_handler(stream)) as s:
        client = await s.connect()
        await client.send(get("/stream", "Connection: keep-alive", version="1.0"))
        resp = await client.read_head()
        assert resp.status == 200
        assert "transfer-encoding" not in resp.headers
        assert "content-length" not in resp.headers
        assert resp.headers["connection"] == "close"
        assert await client.read_to_eof() == stream.body  # no chunk framing, ends at EOF
        assert stream.done_calls == 1


async def test_connection_close_is_honoured() -> None:
    echo = Echo()
    async with serving(echo) as s:
        client = await s.connect()
        resp = await client.request(get("/last", "Connection: close"))
        assert resp.status == 200
        assert resp.headers["connection"] == "close"
        assert await client.closed()


async def test_requests_pipelined_after_connection_close_are_not_handled() -> None:
    echo = Echo()
    async with serving(echo) as s:
        client = await s.connect()
        await client.send(get("/last", "Connection: close") + get("/never"))
        resp = await client.read_response()
        assert resp.status == 200
        assert resp.headers["connection"] == "close"
        await client.read_to_eof()
        assert echo.paths == ["/last"]


async def test_nothing_follows_the_response_to_a_connection_close_request() -> None:
    echo = Echo()
    async with serving(echo) as s:
        client = await s.connect()
        await client.send(get("/last", "Connection: close") + get("/never"))
        resp = await client.read_response()
        assert resp.headers["connection"] == "close"
        assert await client.closed()


# --- request bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pieces", "ext"),
    [
        ([b"h", b"e", b"l", b"l", b"o"], ""),
        ([bytes([i]) for i in range(256)], ""),
        ([b"hello", b" ", b"world"], ";name=value"),
        ([b"x" * 70000, b"y"], ';q="quoted"'),
    ],
    ids=["one-byte-chunks", "all-byte-values", "extensions", "large-chunk"],
)
async def test_chunked_request_bodies(pieces: list[bytes], ext: str) -> None:
    echo = Echo()
    async with serving(echo) as s:
        client = await s.connect()
        resp = await client.request(chunked("/c", pieces, ext=ext))
        assert resp.status == 200
        assert echo.seen[-1].body == b"".join(pieces)
        client.close()


async def test_chunked_body_with_trailers_and_uppercase_hex_sent_byte_by_byte() -> None:
    echo = Echo()
    async with serving(echo) as s:
        client = await s.connect()
        raw = (
            get("/t", "Transfer-Encoding: chunked", method="POST")
            + b"A\r\n0123456789\r\n1;x\r\n!\r\n0\r\nX-Trailer: yes\r\n\r\n"
        )
        for byte in raw:  # every byte its own segment
            await client.send(bytes([byte]))
        resp = await client.read_response()
        assert resp.status == 200
        assert echo.seen[-1].body == b"0123456789!"
        # and the connection carries on
        assert (await client.request(get("/after"))).json()["path"] == "/after"
        client.close()


async def test_expect_100_continue_gets_continue_then_the_reply() -> None:
    echo = Echo()
    async with serving(echo) as s:
        client = await s.connect()
        await client.send(get("/e", "Content-Length: 5", "Expect: 100-continue", method="POST"))
        interim = await client.read_response()
        assert interim.status == 100
        assert echo.seen == []  # not answered before the body came
        await client.send(b"hello")
        resp = await client.read_response()
        assert resp.status == 200
        assert resp.json()["body"] == "hello"
        client.close()


async def test_expect_100_continue_over_the_limit_gets_413_without_continue() -> None:
    echo = Echo()
    async with serving(echo, max_body_bytes=100) as s:
        client = await s.connect()
        await client.send(get("/e", "Content-Length: 101", "Expect: 100-continue", method="POST"))
        resp = await client.read_response()
        assert resp.status == 413  # the first thing on the wire; no 100 before it
        assert resp.headers["connection"] == "close"
        assert echo.seen[0].too_large and echo.seen[0].body == b""
        assert echo.seen[0].length == 101
        assert await client.closed()


async def test_pipelined_expect_100_continue_waits_for_earlier_responses() -> None:
    stream = Stream(pieces=[b"first ", b"second"], hold_before=1)
    async with serving(stream_handler(stream)) as s:
        client = await s.connect()
        await client.send(get("/stream"))
        head = await client.read_head()
        assert head.status == 200
        await asyncio.wait_for(stream.held.wait(), T)
        # A pipelining client sends its next request, which expects 100-continue.
        await client.send(get("/next", "Content-Length: 3", "Expect: 100-continue", method="POST"))
        await asyncio.sleep(0.05)
        stream.gate.set()
        body, complete = await client.read_chunked()
        assert complete and body == stream.body, "the stream's chunked body was corrupted"
        client.close()


async def test_http10_expect_100_continue_gets_no_interim_response() -> None:
    echo = Echo()
    async with serving(echo) as s:
        client = await s.connect()
        await client.send(
            get("/e", "Content-Length: 2", "Expect: 100-continue", version="1.0", method="POST")
        )
        await asyncio.sleep(0.05)
        await client.send(b"hi")
        resp = await client.read_response()
        assert resp.status == 200, f"got {resp.status} first"
        client.close()


# --- the body size limit ----------------------------------------------------------------------


LIMIT = 1000


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_body_exactly_at_the_limit_is_accepted_and_one_more_byte_refused(
    framing: str,
) -> None:
    echo = Echo()

    def make(size: int) -> bytes:
        body = b"z" * size
        if framing == "chunked":
            return chunked("/b", [body[: size // 3], body[size // 3 :]])
        return post("/b", body)

    async with serving(echo, max_body_bytes=LIMIT) as s:
        client = await s.connect()
        ok = await client.request(make(LIMIT))
        assert ok.status == 200
        assert len(echo.seen[-1].body) == LIMIT
        refused = await client.request(make(LIMIT + 1))
        assert refused.status == 413
        assert refused.headers["connection"] == "close"
        assert echo.seen[-1].too_large
        assert echo.seen[-1].body == b""  # never buffered
        assert echo.seen[-1].length == (LIMIT + 1 if framing == "content-length" else None)
        assert await client.closed()
        # the server keeps serving new connections
        for _ in range(3):
            again = await s.connect()
            assert (await again.request(make(LIMIT))).status == 200
            again.close()


async def test_an_over_limit_body_sent_in_full_still_lets_the_client_read_the_413() -> None:
    echo = Echo()
    async with serving(echo, max_body_bytes=LIMIT) as s:
        for framing in ("content-length", "chunked"):
            client = await s.connect()
            big = b"q" * (4 << 20)
            raw = post("/big", big) if framing == "content-length" else chunked("/big", [big])
            await client.send(raw)  # the whole 4 MB goes out before the client reads anything
            await asyncio.sleep(0.05)
            resp = await client.read_response()
            assert resp.status == 413
            assert resp.json()["too_large"] is True
            assert await client.closed()


async def test_the_413_is_answered_before_the_rest_of_the_body_arrives() -> None:
    echo = Echo()
    async with serving(echo, max_body_bytes=LIMIT) as s:
        client = await s.connect()
        await client.send(get("/big", f"Content-Length: {10 << 20}", method="POST") + b"x" * 100)
        resp = await client.read_response()  # without sending the remaining 10 MB
        assert resp.status == 413
        assert await client.closed()


# --- oversized and malformed heads ------------------------------------------------------------


def oversized_head(shape: str, size: int) -> bytes:
    """A complete request head of at least `size` bytes."""
    if shape == "many-headers":
        count = size // 40 + 1
        lines = [f"X-Header-{i:05d}: {'v' * 22}" for i in range(count)]
        return get("/h", *lines)
    if shape == "one-huge-header":
        return get("/h", "X-Huge: " + "h" * size)
    return get("/" + "p" * size)  # a huge request line


SHAPES = ["many-headers", "one-huge-header", "huge-request-line"]


@pytest.mark.parametrize("shape", SHAPES)
async def test_head_over_64k_still_incomplete_gets_431_and_close(shape: str) -> None:
    echo = Echo()
    async with serving(echo) as s:
        client = await s.connect()
        head = oversized_head(shape, 70 * 1024)[:-2]  # all but the blank line that ends it
        for start in range(0, len(head), 20000):
            await client.send(head[start : start + 20000])
            await asyncio.sleep(0.01)
        resp = await client.read_response()
        assert resp.status == 431
        assert resp.headers["connection"] == "close"
        assert "exceed" in resp.json()["error"]["message"]
        assert await client.closed()
        assert echo.seen == []


@pytest.mark.parametrize("shape", SHAPES)
async def test_head_far_over_64k_in_one_write_gets_431(shape: str) -> None:
    echo = Echo()
    async with serving(echo) as s:
        client = await s.connect()
        client.writer.write(oversized_head(shape, 2 << 20))
        resp = await client.read_response()
        assert resp.status == 431
        assert await client.closed()
        assert echo.seen == []


@pytest.mark.parametrize("delivery", ["one-write", "three-writes"])
@pytest.mark.parametrize("shape", SHAPES)
async def test_head_just_over_64k_gets_431(shape: str, delivery: str) -> None:
    echo = Echo()
    async with serving(echo) as s:
        client = await s.connect()
        head = oversized_head(shape, h1.MAX_HEAD_BYTES + 200)
        assert h1.MAX_HEAD_BYTES < len(head) < h1.MAX_HEAD_BYTES + 400
        if delivery == "one-write":
            await client.send(head)
        else:
            for piece in (head[:30000], head[30000:50000], head[50000:]):
                await client.send(piece)
                await asyncio.sleep(0.01)
        resp = await client.read_response()
        assert resp.status == 431, f"a {len(head)}-byte head was answered {resp.status}"
        assert echo.seen == []


async def test_head_just_under_64k_is_served() -> None:
    echo = Echo()
    async with serving(echo) as s:
        client = await s.connect()
        head = oversized_head("one-huge-header", 60 * 1024)
        resp = await client.request(head)
        assert resp.status == 200
        assert len(echo.seen[0].headers["x-huge"]) >= 60 * 1024
        client.close()


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: test\r\n\r\n"

MALFORMED = {
    "cl-and-te": b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "te-and-cl": b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Length: 40\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "duplicate-differing-cl": b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n"
    b"Content-Length: 38\r\n\r\n" + SMUGGLED,
    "cl-list": b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 0, 38\r\n\r\n" + SMUGGLED,
    "te-not-chunked-last": b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity"
    b"\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "te-obfuscated": b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n"
    b"0\r\n\r\n" + SMUGGLED,
    "te-twice": b"POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
    b"Transfer-Encoding: identity\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "space-before-colon": b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length : 38\r\n\r\n" + SMUGGLED,
    "obs-fold": b"GET /a HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n",
    "nul-in-header": b"GET /a HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n",
    "ctl-in-header-name": b"GET /a HTTP/1.1\r\nHost: t\r\nX\x01A: b\r\n\r\n",
    "empty-header-name": b"GET /a HTTP/1.1\r\nHost: t\r\n: b\r\n\r\n",
    "bare-lf": b"GET /a HTTP/1.1\nHost: t\n\n",
    "bare-cr": b"GET /a HTTP/1.1\rHost: t\r\r",
    "bad-method": b"G\x01T /a HTTP/1.1\r\n\r\n",
    "bad-version": b"GET /a HTTP/9.9\r\n\r\n",
    "no-version-digit": b"GET /a HTTP/1.x\r\n\r\n",
    "space-in-target": b"GET /a b HTTP/1.1\r\n\r\n",
    "high-byte-in-target": b"GET /\xff HTTP/1.1\r\n\r\n",
    "negative-cl": b"POST /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    "overflowing-cl": b"POST /a HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    "bad-chunk-size": b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"zz\r\nhi\r\n0\r\n\r\n",
    "overflowing-chunk-size": b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"fffffffffffffffffffff\r\nhi\r\n0\r\n\r\n",
    "negative-chunk-size": b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
    "chunk-without-crlf": b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"2\r\nhiXX0\r\n\r\n",
    "chunk-lf-only": b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\nhi\n0\n\n",
    "h2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "tls-client-hello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
}


@pytest.mark.parametrize("raw", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_malformed_requests_get_400_and_close(raw: bytes) -> None:
    echo = Echo()
    async with serving(echo) as s:
        client = await s.connect()
        await client.send(raw)
        resp = await client.read_response()
        assert resp.status == 400
        assert resp.headers["connection"] == "close"
        assert resp.json()["error"]["type"] == "invalid_request_error"
        assert await client.closed()
        assert "/smuggled" not in echo.paths
        assert echo.seen == []


@pytest.mark.parametrize("raw", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_garbage_after_a_valid_pipelined_request_answers_the_valid_one_first(
    raw: bytes,
) -> None:
    release = asyncio.Event()
    echo = Echo()

    async def slow_echo(request: Request) -> Reply:
        await release.wait()  # still answering when the garbage is parsed
        return await echo(request)

    async with serving(slow_echo) as s:
        client = await s.connect()
        await client.send(post("/first", b"ok") + raw)
        await asyncio.sleep(0.02)
        release.set()
        first = await client.read_response()
        assert first.status == 200
        assert first.json()["path"] == "/first"
        second = await client.read_response()
        assert second.status == 400
        assert await client.closed()
        assert echo.paths == ["/first"]


async def test_a_server_keeps_serving_after_a_burst_of_bad_connections() -> None:
    echo = Echo()
    async with serving(echo, max_body_bytes=LIMIT) as s:
        bad = [MALFORMED["cl-and-te"], oversized_head("many-headers", 1 << 20), b"\x00" * 100]
        for raw in bad * 5:
            client = await s.connect()
            client.writer.write(raw)
            assert (await client.read_response()).status in (400, 431)
            client.abort()
        client = await s.connect()
        assert (await client.request(get("/fine"))).status == 200
        client.close()


# --- idle and stalled clients -----------------------------------------------------------------


@pytest.mark.parametrize(
    "partial",
    [
        b"",
        b"GET /half HTTP/1.1\r\nHost: test\r\nX-Trailing",
        b"POST /half HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\nonly part of it",
        b"POST /half HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc",
    ],
    ids=["nothing", "half-a-head", "half-a-body", "half-a-chunk"],
)
async def test_a_stalled_client_is_closed_by_the_idle_timeout(partial: bytes) -> None:
    echo = Echo()
    async with serving(echo, idle_timeout=0.2) as s:
        client = await s.connect()
        if partial:
            await client.send(partial)
        started = time.monotonic()
        assert await client.closed(within=3.0), "a stalled connection was never closed"
        assert time.monotonic() - started < 2.5
        assert echo.seen == []
        assert not s.server.connections


async def test_an_idle_keep_alive_connection_is_closed_but_a_busy_one_is_not() -> None:
    release = asyncio.Event()

    async def handler(request: Request) -> Reply:
        if request.path == "/slow":
            await release.wait()
        return json_reply({"path": request.path})

    async with serving(handler, idle_timeout=0.2) as s:
        idle = await s.connect()
        assert (await idle.request(get("/quick"))).status == 200
        busy = await s.connect()
        await busy.send(get("/slow"))
        assert await idle.closed(within=3.0)
        await asyncio.sleep(0.3)  # well past the idle timeout
        release.set()
        resp = await busy.read_response()  # the busy one was not cut
        assert resp.json() == {"path": "/slow"}
        busy.close()


# --- disconnects and cancellation -------------------------------------------------------------


async def test_a_client_that_disconnects_cancels_the_waiting_handler() -> None:
    entered = asyncio.Event()
    cancelled = asyncio.Event()
    outcome: list[str] = []

    async def handler(request: Request) -> Reply:
        entered.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            outcome.append("cancelled")
            cancelled.set()
            raise
        outcome.append("finished")
        return json_reply({})

    async with serving(handler) as s:
        # A half-close (shutdown(SHUT_WR)) counts as hanging up too, as it did with aiohttp.
        for how in ("close", "abort", "half-close"):
            entered.clear()
            cancelled.clear()
            client = await s.connect()
            await client.send(get("/wait"))
            await asyncio.wait_for(entered.wait(), T)
            if how == "close":
                client.close()
            elif how == "abort":
                client.abort()
            else:
                client.writer.write_eof()
            await asyncio.wait_for(cancelled.wait(), T)
        assert outcome == ["cancelled"] * 3
        await wait_until(lambda: not s.server.connections, what="connections to close")


async def test_a_client_that_disconnects_mid_stream_cancels_it_and_done_is_called_once() -> None:
    stream = Stream(pieces=[b"first", b"never"], hold_before=1)
    async with serving(stream_handler(stream)) as s:
        client = await s.connect()
        await client.send(get("/stream"))
        head = await client.read_head()
        assert head.status == 200
        await asyncio.wait_for(stream.held.wait(), T)
        client.close()
        await wait_until(lambda: stream.done_calls > 0, what="done")
        await asyncio.sleep(0.05)
        assert stream.done_calls == 1
        assert stream.cancelled
        assert not stream.finished
        assert not stream.gate.is_set()


async def test_a_disconnect_before_the_first_chunk_still_calls_done_once() -> None:
    stream = Stream(pieces=[b"never"], hold_before=0)
    async with serving(stream_handler(stream)) as s:
        client = await s.connect()
        await client.send(get("/stream"))
        assert (await client.read_head()).status == 200
        await asyncio.wait_for(stream.held.wait(), T)
        client.abort()
        await wait_until(lambda: stream.done_calls > 0, what="done")
        await asyncio.sleep(0.05)
        assert stream.done_calls == 1
        assert stream.cancelled
        assert stream.yielded == 0


async def test_a_disconnect_while_the_stream_is_paused_for_a_slow_reader_calls_done_once() -> None:
    stream = Stream(pieces=[b"x" * 65536] * 400)
    async with serving(stream_handler(stream)) as s:
        client = await s.connect(limit=65536)
        await client.send(get("/stream"))
        assert (await client.read_head()).status == 200
        await wait_until(lambda: stream.yielded > 5, what="the stream to start")
        await asyncio.sleep(0.05)  # paused on the unread buffer
        assert not stream.finished
        client.abort()
        await wait_until(lambda: stream.done_calls > 0, what="done")
        await asyncio.sleep(0.05)
        assert stream.done_calls == 1
        assert stream.closed or stream.cancelled
        assert not stream.finished


async def test_a_stream_abandoned_before_it_starts_is_told_so_by_done() -> None:
    """A generator that never started runs no `finally` (Python closes it without entering
    its body), so a handler cleans up in `done` what its relay never got to (the pipeline
    closes the upstream response there); `done` runs exactly once, also in this case."""
    gate = asyncio.Event()
    entered = asyncio.Event()
    started: list[bool] = []
    cleaned: list[str] = []

    async def handler(request: Request) -> StreamReply:
        entered.set()
        await gate.wait()  # as the forward stage awaits the upstream's response head

        async def relay() -> AsyncIterator[bytes]:
            started.append(True)
            yield b"data: {}\n\n"

        def done() -> None:
            if not started:
                cleaned.append("an open upstream response")  # resp.close(), span end ...

        return StreamReply(200, CIMultiDict(), relay(), done=done)

    async with serving(handler) as s:
        sock = socket.create_connection((s.host, s.port))
        sock.sendall(get("/stream"))
        await asyncio.wait_for(entered.wait(), T)
        sock.close()
        # Blocking on purpose: the FIN reaches the server's socket before its loop looks.
        time.sleep(0.02)  # noqa: ASYNC251
        await asyncio.sleep(0)  # the next turn polls the EOF after this task's step ...
        gate.set()  # ... so the handler resumes right after the EOF closed the transport
        await wait_until(lambda: bool(cleaned), what="done")
        await asyncio.sleep(0.05)
        assert cleaned == ["an open upstream response"]


async def small_buffered_client(s: Served) -> Client:
    """A client whose kernel buffers, and the server's for it, are small: what runs ahead
    of the reader is then the server's own buffer, not loopback's megabytes."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.setblocking(False)
    await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (s.host, s.port)), T)
    await wait_until(lambda: len(s.server.connections) == 1, what="the connection")
    transport = next(iter(s.server.connections))._transport
    assert transport is not None
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    reader, writer = await asyncio.open_connection(sock=sock, limit=16 * 1024)
    return Client(reader, writer)


async def test_a_slow_reader_pauses_the_stream_instead_of_buffering_it() -> None:
    chunk = 64 * 1024
    stream = Stream(pieces=[b"s" * chunk] * 512)  # 32 MB if nothing held it back
    async with serving(stream_handler(stream)) as s:
        client = await small_buffered_client(s)
        await client.send(get("/stream"))
        assert (await client.read_head()).status == 200
        consumed = 0
        ahead = 0
        for _ in range(40):  # read 640 KB, slowly
            data = await asyncio.wait_for(client.reader.read(16 * 1024), T)
            assert data
            consumed += len(data)
            await asyncio.sleep(0.005)
            ahead = max(ahead, stream.produced - consumed)
        assert not stream.finished
        # HIGH_WATER (256 KB) and the chunk that crossed it, plus small kernel buffers.
        assert ahead < 768 * 1024, f"the stream ran {ahead} bytes ahead of its reader"
        transport = next(iter(s.server.connections))._transport
        assert transport is not None
        assert transport.get_write_buffer_size() <= h1.HIGH_WATER + chunk + 64
        client.abort()
        await wait_until(lambda: stream.done_calls == 1, what="done")


async def test_a_stalled_reader_stops_the_stream_at_the_high_water_mark() -> None:
    chunk = 16 * 1024
    stream = Stream(pieces=[b"s" * chunk] * 2048)  # 32 MB on offer
    async with serving(stream_handler(stream)) as s:
        client = await small_buffered_client(s)
        await client.send(get("/stream"))  # and never read
        await wait_until(lambda: stream.yielded > 0, what="the stream to start")
        await asyncio.sleep(0.2)
        produced = stream.produced
        await asyncio.sleep(0.1)
        assert stream.produced == produced, "the stream kept going for a reader that stalled"
        assert produced < h1.HIGH_WATER + 256 * 1024, f"{produced} bytes produced for no reader"
        client.abort()
        await wait_until(lambda: stream.done_calls == 1, what="done")


# --- failing handlers and streams -------------------------------------------------------------


async def test_a_handler_that_raises_gets_500_json_and_the_connection_carries_on() -> None:
    async def handler(request: Request) -> Reply:
        if request.path.endswith("/boom"):
            raise RuntimeError("handler bug")
        return json_reply({"path": request.path})

    async with serving(handler) as s:
        client = await s.connect()
        for path in ("/boom", "/v1/messages/boom"):
            resp = await client.request(get(path))
            assert resp.status == 500
            assert resp.headers["content-type"] == "application/json"
            data = resp.json()
            if path.startswith("/v1/messages"):
                assert data["type"] == "error" and data["error"]["type"] == "api_error"
            else:
                assert data["error"]["type"] == "server_error"
            assert "handler bug" not in resp.body.decode()  # no internals leak
            assert (await client.request(get("/ok"))).json() == {"path": "/ok"}
        # pipelined behind a failure, too
        await client.send(get("/boom") + get("/after"))
        assert (await client.read_response()).status == 500
        assert (await client.read_response()).json() == {"path": "/after"}
        client.close()


async def test_a_handler_raising_a_stray_cancelled_error_does_not_wedge_the_connection() -> None:
    async def handler(request: Request) -> Reply:
        if request.path == "/stray":
            shared: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            shared.cancel()  # cancelled by its owner, not by this connection
            await shared
        return json_reply({"path": request.path})

    async with serving(handler, idle_timeout=0.2) as s:
        client = await s.connect()
        await client.send(get("/stray") + get("/next"))
        try:
            resp = await client.read_response(within=1.5)  # idle_timeout + its 1 s re-check
        except TimeoutError:
            pytest.fail("no answer and no close: the connection is wedged")
        assert resp.status == 500


async def test_a_stream_that_raises_mid_way_aborts_the_connection() -> None:
    stream = Stream(pieces=[b"good ", b"good ", b"never"], fail_after=2)
    async with serving(stream_handler(stream)) as s:
        client = await s.connect()
        resp = await client.request(get("/stream"))
        assert resp.status == 200
        assert resp.body == b"good good "
        assert not resp.complete, "a broken stream must not end with a clean terminator"
        assert await client.closed()
        assert stream.done_calls == 1


async def test_a_stream_that_raises_before_its_first_chunk_aborts_the_connection() -> None:
    stream = Stream(pieces=[b"never"], fail_after=0)
    async with serving(stream_handler(stream)) as s:
        client = await s.connect()
        await client.send(get("/stream") + get("/plain"))
        resp = await client.read_response()
        assert resp.body == b"" and not resp.complete
        assert await client.closed()
        assert stream.done_calls == 1


INJECTIONS = [
    ("x-note", "ok\r\nset-cookie: evil=1"),
    ("x-note", "ok\nset-cookie: evil=1"),
    ("x-note", "ok\rset-cookie: evil=1"),
    ("x-note", "ok\r\n\r\nHTTP/1.1 200 OK\r\nset-cookie: evil=1"),
    ("x-a\r\nset-cookie", "evil=1"),
    ("x-note", "\r\nset-cookie: evil=1\r"),
]


@pytest.mark.parametrize(("name", "value"), INJECTIONS)
async def test_reply_headers_with_cr_or_lf_never_reach_the_client(name: str, value: str) -> None:
    async def handler(request: Request) -> Reply:
        if request.path == "/inject":
            headers = CIMultiDict({"content-type": "application/json", "x-fine": "1"})
            headers.add(name, value)
            return Reply(200, headers, b'{"ok": true}')
        return json_reply({"path": request.path})

    async with serving(handler) as s:
        client = await s.connect()
        resp = await client.request(get("/inject"))
        assert "set-cookie" not in resp.headers
        assert b"evil" not in resp.head and b"evil" not in resp.body
        assert resp.status == 500
        # the framing held: the next response on the connection parses
        assert (await client.request(get("/next"))).json() == {"path": "/next"}
        client.close()


@pytest.mark.parametrize(("name", "value"), INJECTIONS)
async def test_stream_reply_headers_with_cr_or_lf_never_reach_the_client(
    name: str, value: str
) -> None:
    stream = Stream()

    async def handler(request: Request) -> StreamReply:
        headers: CIMultiDict[str] = CIMultiDict({"content-type": "text/event-stream"})
        headers.add(name, value)
        return stream.reply(headers=headers)

    async with serving(handler) as s:
        client = await s.connect()
        resp = await client.request(get("/stream"))
        assert resp.status == 500  # nothing was written yet: an error reply, not a cut
        assert b"evil" not in resp.head + resp.body
        await wait_until(lambda: stream.done_calls == 1, what="done")
        assert (await client.request(get("/next"))).status == 500  # the connection lives on


async def test_latin1_header_values_round_trip() -> None:
    async def handler(request: Request) -> Reply:
        value = request.headers["x-name"]
        return Reply(200, CIMultiDict({"x-echo": value, "x-len": str(len(value))}), b"")

    async with serving(handler) as s:
        client = await s.connect()
        raw = b"GET /l HTTP/1.1\r\nHost: t\r\nX-Name: caf\xe9 \xfc\xff\x80 end\r\n\r\n"
        resp = await client.request(raw)
        assert resp.status == 200
        assert resp.head.count(b"x-echo: caf\xe9 \xfc\xff\x80 end\r\n") == 1
        assert resp.headers["x-len"] == str(len("café üÿ\x80 end"))
        client.close()


async def test_non_latin1_reply_header_values_do_not_break_the_head() -> None:
    async def handler(request: Request) -> Reply:
        return Reply(200, CIMultiDict({"x-city": "東京", "x-emoji": "🙂"}), b"ok")

    async with serving(handler) as s:
        client = await s.connect()
        resp = await client.request(get("/u"))
        assert resp.status == 200 and resp.body == b"ok"
        assert resp.headers["x-city"].encode("latin-1").decode("utf-8") == "東京"
        assert (await client.request(get("/again"))).body == b"ok"
        client.close()


async def test_a_non_latin1_header_does_not_re_encode_the_other_headers() -> None:
    async def handler(request: Request) -> Reply:
        headers = CIMultiDict({"x-latin": request.headers["x-name"], "x-city": "東京"})
        return Reply(200, headers, b"ok")

    async with serving(handler) as s:
        client = await s.connect()
        resp = await client.request(b"GET /m HTTP/1.1\r\nHost: t\r\nX-Name: caf\xe9\r\n\r\n")
        assert b"x-latin: caf\xe9\r\n" in resp.head, f"head was {resp.head!r}"


@pytest.mark.parametrize("status", [529, 418, 299, 599, 202])
async def test_statuses_the_stdlib_does_not_name_get_a_valid_status_line(status: int) -> None:
    async def handler(request: Request) -> Reply | StreamReply:
        if request.path == "/stream":
            return Stream().reply(status=status)
        return json_reply({"type": "error"}, status)

    async with serving(handler) as s:
        client = await s.connect()
        for path in ("/plain", "/stream", "/plain"):
            resp = await client.request(get(path))  # read_head validates the status line
            assert resp.status == status
            assert resp.body
        client.close()


async def test_head_answered_by_a_stream_sends_no_body() -> None:
    stream = Stream()
    async with serving(stream_handler(stream)) as s:
        client = await s.connect()
        await client.send(get("/stream", method="HEAD") + get("/plain"))
        head = await client.read_response(head_request=True)
        assert head.status == 200
        nxt = await client.read_response()
        assert nxt.json() == {"path": "/plain"}


@pytest.mark.parametrize("kind", ["plain", "stream"])
async def test_a_204_reply_has_no_body_framing(kind: str) -> None:
    async def handler(request: Request) -> Reply | StreamReply:
        if request.path == "/empty":
            if kind == "stream":
                return Stream(pieces=[]).reply(status=204)
            return Reply(204, CIMultiDict(), b"")
        return json_reply({"path": request.path})

    async with serving(handler) as s:
        client = await s.connect()
        await client.send(get("/empty") + get("/next"))
        empty = await client.read_response()
        assert empty.status == 204
        assert (await client.read_response()).json() == {"path": "/next"}
        assert "content-length" not in empty.headers
        assert "transfer-encoding" not in empty.headers


async def test_head_answered_by_a_plain_reply_sends_headers_only() -> None:
    echo = Echo()
    async with serving(echo) as s:
        client = await s.connect()
        await client.send(get("/h", method="HEAD") + get("/g"))
        head = await client.read_response(head_request=True)
        assert head.status == 200 and int(head.headers["content-length"]) > 0
        nxt = await client.read_response()
        assert nxt.json()["path"] == "/g"
        client.close()


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        ("/v1/chat/%63ompletions", "/v1/chat/completions", ""),
        ("/v1/models/gpt%2D4o%20mini?x=%20", "/v1/models/gpt-4o mini", "x=%20"),
        ("http://example.com/v1/chat/completions?a=1&b=2", "/v1/chat/completions", "a=1&b=2"),
        ("http://127.0.0.1:9/v1/messages", "/v1/messages", ""),
        ("http://example.com", "/", ""),
        ("/a%C3%A9b", "/aéb", ""),
        ("/bad%ZZescape%", "/bad%ZZescape%", ""),
        ("/x?q=a?b", "/x", "q=a?b"),
    ],
)
async def test_request_targets_are_split_and_decoded(target: str, path: str, query: str) -> None:
    echo = Echo()
    async with serving(echo) as s:
        client = await s.connect()
        resp = await client.request(get(target))
        assert resp.status == 200
        assert (resp.json()["path"], resp.json()["query"]) == (path, query)
        client.close()


# --- shutdown ---------------------------------------------------------------------------------


async def test_stop_finishes_streams_within_grace_refuses_new_and_closes_idle_at_once() -> None:
    stream = Stream(pieces=[b"p%d " % i for i in range(6)], hold_before=2)
    server = Server(stream_handler(stream), error_reply, max_body_bytes=LIMIT)
    host, port = await server.start("127.0.0.1", 0)
    idle = await Client.connect(host, port)
    assert (await idle.request(get("/plain"))).status == 200
    streaming = await Client.connect(host, port)
    await streaming.send(get("/stream"))
    assert (await streaming.read_head()).status == 200
    await asyncio.wait_for(stream.held.wait(), T)

    stopping = asyncio.create_task(server.stop(grace=3.0))
    started = time.monotonic()
    assert await idle.closed(within=1.0), "an idle keep-alive connection was kept open"
    with pytest.raises(OSError):
        await Client.connect(host, port)
    assert not stopping.done()
    await asyncio.sleep(0.1)
    stream.gate.set()  # the stream finishes well within the grace
    body, complete = await streaming.read_chunked()
    assert complete and body == stream.body
    assert await streaming.closed()
    await asyncio.wait_for(stopping, T)
    assert time.monotonic() - started < 2.0, "stop waited out the grace needlessly"
    assert stream.done_calls == 1 and stream.finished


async def test_stop_cuts_streams_that_exceed_the_grace() -> None:
    stream = Stream(pieces=[b"p0 ", b"p1 ", b"never"], hold_before=2)
    server = Server(stream_handler(stream), error_reply, max_body_bytes=LIMIT)
    host, port = await server.start("127.0.0.1", 0)
    client = await Client.connect(host, port)
    await client.send(get("/stream"))
    assert (await client.read_head()).status == 200
    await asyncio.wait_for(stream.held.wait(), T)
    started = time.monotonic()
    await asyncio.wait_for(server.stop(grace=0.3), T)
    assert 0.25 < time.monotonic() - started < 2.0
    body, complete = await client.read_chunked()
    assert body == b"p0 p1 " and not complete
    await wait_until(lambda: stream.done_calls > 0, what="done")
    await asyncio.sleep(0.02)
    assert stream.done_calls == 1 and stream.cancelled


async def test_stop_returns_only_after_cut_calls_have_unwound() -> None:
    stream = Stream(pieces=[b"p0 ", b"never"], hold_before=1)
    server = Server(stream_handler(stream), error_reply, max_body_bytes=LIMIT)
    host, port = await server.start("127.0.0.1", 0)
    client = await Client.connect(host, port)
    await client.send(get("/stream"))
    await asyncio.wait_for(stream.held.wait(), T)
    await server.stop(grace=0.1)
    unwound = (stream.done_calls, stream.cancelled, len(server.connections))
    await asyncio.sleep(0.05)
    client.close()
    assert unwound == (1, True, 0)


async def test_stop_with_a_pending_plain_reply_answers_it_with_connection_close() -> None:
    release = asyncio.Event()

    async def handler(request: Request) -> Reply:
        await release.wait()
        return json_reply({"path": request.path})

    server = Server(handler, error_reply, max_body_bytes=LIMIT)
    host, port = await server.start("127.0.0.1", 0)
    client = await Client.connect(host, port)
    await client.send(get("/pending") + get("/queued"))
    await asyncio.sleep(0.05)
    stopping = asyncio.create_task(server.stop(grace=2.0))
    await asyncio.sleep(0.05)
    release.set()
    resp = await client.read_response()
    assert resp.json() == {"path": "/pending"}
    assert resp.headers["connection"] == "close"
    assert await client.closed()
    await asyncio.wait_for(stopping, T)


# --- end to end, through the real routes and the openai SDK -----------------------------------


def proxy_of(sc: Running) -> Server:
    server = sc.sidecar._proxy
    assert server is not None
    return server


async def connect_to(sc: Running) -> Client:
    assert sc.sidecar.http_address is not None
    return await Client.connect(*sc.sidecar.http_address)


def chat_body(content: str, **extra: Any) -> bytes:
    return json.dumps(
        {"model": "gpt-4o", "messages": [{"role": "user", "content": content}], **extra}
    ).encode()


AGENT = "Authorization: Bearer agent"


async def test_openai_sdk_reuses_keep_alive_connections_sequentially_and_concurrently(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(openai_bundle(fake))
    client = openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key="agent", max_retries=0)
    try:
        for i in range(25):
            out = await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": f"seq {i}"}]
            )
            assert out.choices[0].message.content == f"fake says: seq {i}"
        assert len(proxy_of(sc).connections) == 1  # one keep-alive connection did it all

        async def one(i: int) -> str:
            out = await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": f"par {i}"}]
            )
            return out.choices[0].message.content or ""

        answers = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(30))), T)
        assert answers == [f"fake says: par {i}" for i in range(30)]

        for i in range(8):
            stream = await client.chat.completions.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": f"stream {i}"}],
                stream=True,
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            assert text == f"fake says: stream {i}"
        models = await client.models.list()
        assert {m.id for m in models.data} >= {"mock-echo"}
        assert len(proxy_of(sc).connections) <= 30
    finally:
        await client.close()


async def test_a_caller_that_disconnects_mid_stream_cancels_the_upstream_call(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(openai_bundle(fake))
    fake.gate = asyncio.Event()  # the upstream hangs after its first delta
    fake.stream_chunks = 5
    client = await connect_to(sc)
    await client.send(post("/v1/chat/completions", chat_body("hello", stream=True), AGENT))
    head = await client.read_head()
    assert head.status == 200 and head.headers["transfer-encoding"] == "chunked"
    await asyncio.wait_for(fake.first_chunk_sent.wait(), T)
    line = await asyncio.wait_for(client.reader.readuntil(b"\r\n"), T)
    assert int(line, 16) > 0
    client.abort()
    span = await sc.wait_for_span("chat gpt-4o")
    assert dict(span.attributes or {})["error.type"] == "cancelled"
    assert fake.streams_completed == 0
    assert not fake.gate.is_set()
    fake.gate.set()
    await wait_until(lambda: not proxy_of(sc).connections, what="the connection to close")


async def test_a_hang_up_as_the_upstream_answers_still_ends_the_upstream_call(
    make_sidecar: MakeSidecar,
) -> None:
    loop = asyncio.get_running_loop()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        port = listener.getsockname()[1]
        sc = await make_sidecar(
            {
                "apiVersion": "sidecar/v1",
                "revision": "r1",
                "upstreams": {
                    "raw": {
                        "base_url": f"http://127.0.0.1:{port}",
                        "api_key": {"env": "FAKE_UPSTREAM_KEY"},
                    }
                },
                "routes": [{"name": "gpt", "match": {"model": "gpt-*"}, "upstream": "raw"}],
                "roles": {"agent": [{"actions": ["*"]}]},
            }
        )
        assert sc.sidecar.http_address is not None
        caller = socket.create_connection(sc.sidecar.http_address)
        caller.sendall(post("/v1/chat/completions", chat_body("hi", stream=True), AGENT))
        upstream, _ = await asyncio.wait_for(loop.sock_accept(listener), T)
        with upstream:
            seen = b""
            while b"\r\n\r\n" not in seen or not seen.endswith(b"}"):
                seen += await asyncio.wait_for(loop.sock_recv(upstream, 65536), T)
            # The upstream answers and the caller hangs up; the sidecar's loop reads both
            # in its next turn, the upstream's head first.
            upstream.setblocking(True)
            upstream.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )
            caller.close()
            time.sleep(0.02)  # noqa: ASYNC251  (blocking on purpose, as above)
            upstream.setblocking(False)
            try:
                rest = await asyncio.wait_for(loop.sock_recv(upstream, 65536), 1.0)
            except ConnectionError:
                rest = b""
            except TimeoutError:
                rest = None
            assert rest == b"", "the sidecar left the upstream call open"
            span = await sc.wait_for_span("chat gpt-4o", within=1.0)
            assert dict(span.attributes or {})["error.type"] == "cancelled"


async def test_head_on_models_returns_headers_without_a_body(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(openai_bundle(fake))
    client = await connect_to(sc)
    await client.send(get("/v1/models", AGENT, method="HEAD") + get("/v1/models", AGENT))
    head = await client.read_response(head_request=True)
    assert head.status == 200
    assert head.headers["content-type"] == "application/json"
    length = int(head.headers["content-length"])
    got = await client.read_response()  # would fail to parse had HEAD carried a body
    assert got.status == 200
    assert len(got.body) == length
    assert "mock-echo" in {m["id"] for m in got.json()["data"]}
    client.close()


@pytest.mark.parametrize(
    "target",
    [
        "/v1/chat/completions",
        "/v1/chat/%63ompletions",
        "/v1%2Fchat%2Fcompletions",
        "http://127.0.0.1/v1/chat/completions",
        "http://sidecar.local:8080/v1/chat/completions?api-version=1",
    ],
)
async def test_percent_encoded_and_absolute_form_targets_route(
    target: str, fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(openai_bundle(fake))
    client = await connect_to(sc)
    resp = await client.request(post(target, chat_body("routed"), AGENT))
    assert resp.status == 200, resp.body
    assert resp.json()["choices"][0]["message"]["content"] == "fake says: routed"
    client.close()


@pytest.mark.parametrize(
    ("method", "target", "status", "allow", "shape"),
    [
        ("GET", "/v1/nope", 404, None, "openai"),
        ("POST", "/v1/chat/completions/extra", 404, None, "openai"),
        ("GET", "/v1/messages/nope", 404, None, "anthropic"),
        ("GET", "/v1/chat/completions", 405, "POST", "openai"),
        ("PUT", "/v1/messages", 405, "POST", "anthropic"),
        ("DELETE", "/v1/models", 405, "GET", "openai"),
        ("POST", "/v1/models/gpt-4o", 405, "GET", "openai"),
        ("OPTIONS", "*", 404, None, "openai"),
    ],
)
async def test_unknown_paths_get_404_and_wrong_methods_405_with_allow(
    method: str,
    target: str,
    status: int,
    allow: str | None,
    shape: str,
    fake: FakeUpstream,
    make_sidecar: MakeSidecar,
) -> None:
    sc = await make_sidecar(openai_bundle(fake))
    client = await connect_to(sc)
    resp = await client.request(post(target, b"{}", AGENT).replace(b"POST", method.encode(), 1))
    assert resp.status == status
    assert resp.headers.get("allow") == allow
    data = resp.json()
    if shape == "anthropic":
        assert data["type"] == "error"
    else:
        assert set(data["error"]) >= {"message", "type"}
    # and the connection is still good
    assert (await client.request(get("/v1/models", AGENT))).status == 200
    client.close()


async def test_body_limit_413_in_each_providers_shape_and_the_server_carries_on(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    limit = 2048
    sc = await make_sidecar(openai_bundle(fake), max_body_bytes=limit)

    def exact(size: int) -> bytes:
        body = chat_body("")
        return chat_body("a" * (size - len(body)))

    def frame(framing: str, path: str, body: bytes) -> bytes:
        if framing == "chunked":
            return chunked(path, [body[:9], body[9:]], AGENT)
        return post(path, body, AGENT)

    assert len(exact(limit)) == limit
    for framing in ("content-length", "chunked"):
        for path in ("/v1/chat/completions", "/v1/messages"):
            client = await connect_to(sc)
            if path == "/v1/chat/completions":
                ok = await client.request(frame(framing, path, exact(limit)))
                assert ok.status == 200, ok.body
            refused = await client.request(frame(framing, path, exact(limit + 1)))
            assert refused.status == 413
            assert refused.headers["connection"] == "close"
            data = refused.json()
            if path == "/v1/messages":
                assert data == {
                    "type": "error",
                    "error": {"type": "request_too_large", "message": data["error"]["message"]},
                }
            else:
                assert data["error"]["code"] == "request_too_large"
                assert data["error"]["type"] == "invalid_request_error"
            assert str(limit) in refused.body.decode()
            assert await client.closed()
    fresh = await connect_to(sc)
    assert (await fresh.request(post("/v1/chat/completions", exact(limit), AGENT))).status == 200
    fresh.close()


async def test_malformed_and_oversized_heads_through_the_real_sidecar(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(openai_bundle(fake))
    for raw, status in [
        (MALFORMED["cl-and-te"], 400),
        (oversized_head("many-headers", 1 << 20), 431),
        (b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX: \x7f\x00\r\n\r\n", 400),
    ]:
        client = await connect_to(sc)
        client.writer.write(raw)
        resp = await client.read_response()
        assert resp.status == status
        assert resp.json()["error"]["type"] == "invalid_request_error"
        assert await client.closed()
    client = await connect_to(sc)
    assert (await client.request(get("/v1/models", AGENT))).status == 200
    client.close()
