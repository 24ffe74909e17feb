"""Trying to break deadlines, retries, breakers, fallbacks and hedging.

Callers are the official `openai` SDK (its own retries off) and the `anthropic` SDK, or
raw aiohttp where a test needs exact headers or bytes. Upstreams are `FakeUpstream`s and,
for faults it cannot make, `Scripted`: a raw asyncio HTTP/1.1 server whose answer to each
request is a coroutine the test picks (a head then silence, half a body, a chunked body
cut mid-chunk, a broken SSE stream, two servers that answer in the same instant...).

Tests that expose a real bug are marked `xfail(strict=True)` with what is wrong.
Every wait is bounded, so no test can hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from e2e.harness import metric_value
from fakes.upstream import FakeUpstream
from integration.conftest import MakeSidecar, Running

SLACK = 0.1  # no call may outlast its deadline by more than this
KEY = {"env": "FAKE_UPSTREAM_KEY"}


# --- a scripted raw upstream ------------------------------------------------------------

Action = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


@dataclass
class Seen:
    head: bytes
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class Scripted:
    """A raw HTTP/1.1 upstream: each request is answered by the next action of `script`
    (or `default`); an action returns True to keep the connection for another request.
    `abandoned` counts requests whose connection the sidecar dropped mid-answer."""

    def __init__(self, name: str = "raw") -> None:
        self.name = name
        self.script: list[Action] = []
        self.default: Action = reply(200, chat_body(f"{name} says hi"))
        self.requests: list[Seen] = []
        self.abandoned = 0
        self._arrived = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> Scripted:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        self._server = None

    async def wait_for_requests(self, n: int, within: float = 3.0) -> None:
        async def poll() -> None:
            while len(self.requests) < n:
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(poll(), within)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    body = await reader.readexactly(length)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.requests.append(Seen(head, body, time.monotonic()))
                self._arrived.set()
                action = self.script.pop(0) if self.script else self.default
                try:
                    keep = await action(reader, writer)
                except (ConnectionError, asyncio.IncompleteReadError):
                    self.abandoned += 1
                    return
                if not keep:
                    writer.close()
                    return
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.transport.abort()


def http_head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} X\r\n"] + [f"{k}: {v}\r\n" for k, v in headers.items()]
    return ("".join(lines) + "\r\n").encode("latin-1")


def as_bytes(body: bytes | dict[str, Any]) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


async def until_gone(reader: asyncio.StreamReader) -> None:
    """Wait until the sidecar drops the connection, then say so (counted as abandoned)."""
    while await reader.read(65536):
        pass
    raise ConnectionResetError("the sidecar hung up")


def reply(
    status: int,
    body: bytes | dict[str, Any],
    headers: dict[str, str] | None = None,
    *,
    after: asyncio.Event | None = None,
    delay: float = 0.0,
) -> Action:
    raw = as_bytes(body)

    async def act(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        if after is not None:
            await after.wait()
        if delay:
            await asyncio.sleep(delay)
        base = {"content-type": "application/json", "content-length": str(len(raw))}
        writer.write(http_head(status, {**base, **(headers or {})}) + raw)
        await writer.drain()
        return True

    return act


def stall() -> Action:
    """Read the request, never answer."""

    async def act(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await until_gone(reader)
        return False

    return act


def head_then_stall(length: int = 500, ctype: str = "application/json") -> Action:
    async def act(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(http_head(200, {"content-type": ctype, "content-length": str(length)}))
        await writer.drain()
        await until_gone(reader)
        return False

    return act


def trickle(body: bytes, every: float) -> Action:
    """A plain reply whose body comes a byte at a time: never silent, never done."""

    async def act(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = {"content-type": "application/json", "content-length": str(len(body))}
        writer.write(http_head(200, head))
        for i in range(len(body)):
            writer.write(body[i : i + 1])
            await writer.drain()
            await asyncio.sleep(every)
        return True

    return act


def half_body_then_close(body: bytes) -> Action:
    async def act(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = {"content-type": "application/json", "content-length": str(len(body))}
        writer.write(http_head(200, head) + body[: len(body) // 2])
        await writer.drain()
        return False

    return act


def sse(
    events: list[bytes],
    *,
    delay: float = 0.0,
    cut_mid_chunk: bytes | None = None,
    status: int = 200,
) -> Action:
    """A chunked SSE reply; `cut_mid_chunk`: then a chunk that promises 1 KiB, sends
    these bytes, and the connection closes."""

    async def act(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = {"content-type": "text/event-stream", "transfer-encoding": "chunked"}
        writer.write(http_head(status, head))
        for event in events:
            writer.write(b"%x\r\n%b\r\n" % (len(event), event))
            await writer.drain()
            if delay:
                await asyncio.sleep(delay)
        if cut_mid_chunk is not None:
            writer.write(b"400\r\n" + cut_mid_chunk)
            await writer.drain()
            return False
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    return act


def chat_body(text: str, model: str = "gpt-4o") -> dict[str, Any]:
    return {
        "id": "chatcmpl-raw",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4},
    }


def embedding_body(value: float) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [value, value]}],
        "model": "gpt-4o",
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }


def chat_chunk(text: str | None, finish: str | None = None) -> bytes:
    payload = {
        "id": "chatcmpl-raw",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "delta": {"content": text} if text is not None else {},
                "finish_reason": finish,
            }
        ],
    }
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def anthropic_events(text: str) -> list[bytes]:
    def event(name: str, payload: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps({'type': name, **payload})}\n\n".encode()

    message: dict[str, Any] = {
        "id": "msg_raw",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    block = {"index": 0, "content_block": {"type": "text", "text": ""}}
    return [
        event("message_start", {"message": message}),
        event("content_block_start", block),
        *(
            event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": w}})
            for w in text.split(" ")
        ),
    ]


# --- fixtures and helpers ---------------------------------------------------------------


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[str], Awaitable[Scripted]]]:
    made: list[Scripted] = []

    async def make(name: str = "raw") -> Scripted:
        server = await Scripted(name).start()
        made.append(server)
        return server

    yield make
    for server in made:
        await server.stop()


@pytest.fixture
async def fakes() -> AsyncIterator[Callable[[str], Awaitable[FakeUpstream]]]:
    made: list[FakeUpstream] = []

    async def make(name: str) -> FakeUpstream:
        upstream = FakeUpstream(name=name)
        await upstream.start()
        made.append(upstream)
        return upstream

    yield make
    for upstream in made:
        await upstream.stop()


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A loopback address whose connects hang: a listener with a full accept queue."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    for s in fillers:
        s.close()
    listener.close()


async def dead_url() -> str:
    """A loopback port nothing listens on any more (connect refused at once)."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return f"http://127.0.0.1:{port}"


def up(url: str, **kw: Any) -> dict[str, Any]:
    return {"base_url": url, "api_key": KEY, **kw}


def make_doc(
    upstreams: dict[str, dict[str, Any]],
    gpt: dict[str, Any],
    claude: dict[str, Any] | None = None,
    revision: str = "r1",
) -> dict[str, Any]:
    routes: list[dict[str, Any]] = [{"match": {"model": "mock-*"}, "upstream": "mock"}]
    if claude is not None:
        routes.append({"name": "claude", "match": {"model": "claude-*"}, **claude})
    routes.append({"name": "gpt", "match": {"model": "gpt-*"}, **gpt})
    return {
        "apiVersion": "sidecar/v1",
        "revision": revision,
        "upstreams": {**upstreams, "mock": {"builtin": "mock", "models": ["mock-echo"]}},
        "routes": routes,
        "roles": {"agent": [{"actions": ["*"]}]},
    }


def oai(sc: Running, **kw: Any) -> openai.AsyncOpenAI:
    kw.setdefault("timeout", 10)
    return openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key="k", max_retries=0, **kw)


def claude(sc: Running, **kw: Any) -> anthropic.AsyncAnthropic:
    kw.setdefault("timeout", 10)
    return anthropic.AsyncAnthropic(base_url=sc.base, api_key="k", max_retries=0, **kw)


async def chat(c: openai.AsyncOpenAI, text: str = "hi", **kw: Any) -> Any:
    return await asyncio.wait_for(
        c.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": text}], **kw
        ),
        10,
    )


async def raw_chat(c: openai.AsyncOpenAI, text: str = "hi", **kw: Any) -> Any:
    return await asyncio.wait_for(
        c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": text}], **kw
        ),
        10,
    )


async def timed(coro: Awaitable[Any]) -> tuple[Any, float]:
    started = time.monotonic()
    try:
        result = await asyncio.wait_for(coro, 10)
    except Exception as exc:
        result = exc
    return result, time.monotonic() - started


async def post(
    sc: Running, path: str, body: bytes | dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes, float]:
    """A raw POST: status, headers, body, seconds taken."""
    started = time.monotonic()
    data = as_bytes(body)
    hdrs = {"content-type": "application/json", **(headers or {})}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{sc.base}{path}", data=data, headers=hdrs, timeout=aiohttp.ClientTimeout(total=10)
        ) as resp,
    ):
        out = await resp.read()
        return resp.status, dict(resp.headers), out, time.monotonic() - started


def chat_json(text: str = "hi", **kw: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": text}], **kw}


def error_code(body: bytes) -> str | None:
    err = json.loads(body).get("error") or {}
    code: str | None = err.get("code")
    return code


async def metrics(sc: Running) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{sc.admin}/metrics") as resp:
        return await resp.text()


async def breakers(sc: Running) -> dict[str, str]:
    async with aiohttp.ClientSession() as http, http.get(f"{sc.admin}/readyz") as resp:
        body: dict[str, Any] = await resp.json()
    found: dict[str, str] = body["breakers"]
    return found


async def eventually(check: Callable[[], bool], within: float = 2.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.01)
    return check()


def gpt(upstream: str = "primary", **route: Any) -> dict[str, Any]:
    return {"upstream": upstream, **route}


# --- deadlines ---------------------------------------------------------------------------


async def test_a_black_hole_connect_is_cut_at_the_route_deadline(
    black_hole: str, make_sidecar: MakeSidecar
) -> None:
    doc = make_doc({"primary": up(black_hole, retry={"attempts": 3})}, gpt(timeout_ms=400))
    sc = await make_sidecar(doc)
    async with oai(sc) as c:
        err, elapsed = await timed(chat(c))
    assert isinstance(err, openai.APIStatusError) and err.status_code == 504, err
    assert err.code == "deadline_exceeded"
    assert 0.4 - 0.01 <= elapsed < 0.4 + SLACK


async def test_a_black_hole_then_a_fallback_share_one_deadline(
    black_hole: str, make_sidecar: MakeSidecar, fakes: Callable[[str], Awaitable[FakeUpstream]]
) -> None:
    backup = await fakes("backup")
    backup.head_delay = 3.0
    doc = make_doc(
        {
            "primary": up(black_hole, timeouts={"connect_ms": 250}, retry={"attempts": 1}),
            "backup": up(backup.url),
        },
        gpt(timeout_ms=600, fallbacks=[{"upstream": "backup"}]),
    )
    sc = await make_sidecar(doc)
    async with oai(sc) as c:
        err, elapsed = await timed(chat(c))
    assert isinstance(err, openai.APIStatusError) and err.status_code == 504, err
    assert elapsed < 0.6 + SLACK
    assert len(backup.requests) == 1  # the fallback was asked in the time left ...
    assert await eventually(lambda: backup.abandoned == 1)  # ... and given up at the deadline


async def test_a_connect_timeout_is_a_504_upstream_timeout(
    black_hole: str, make_sidecar: MakeSidecar
) -> None:
    doc = make_doc(
        {"primary": up(black_hole, timeouts={"connect_ms": 200}, retry={"attempts": 1})}, gpt()
    )
    sc = await make_sidecar(doc)
    async with oai(sc) as c:
        err, elapsed = await timed(chat(c))
    assert isinstance(err, openai.APIStatusError)
    assert elapsed < 0.2 + SLACK
    assert (err.status_code, err.code) == (504, "upstream_timeout")


async def test_a_head_then_silence_on_a_plain_reply_ends_at_the_deadline(
    scripted: Callable[[str], Awaitable[Scripted]], make_sidecar: MakeSidecar
) -> None:
    raw = await scripted("raw")
    raw.default = head_then_stall()
    sc = await make_sidecar(make_doc({"primary": up(raw.url)}, gpt(timeout_ms=400)))
    async with oai(sc) as c:
        err, elapsed = await timed(chat(c))
    assert isinstance(err, openai.APIStatusError) and err.status_code == 504, err
    assert 0.4 - 0.01 <= elapsed < 0.4 + SLACK
    assert await eventually(lambda: raw.abandoned == 1)


async def test_a_body_trickling_a_byte_at_a_time_ends_at_the_deadline(
    scripted: Callable[[str], Awaitable[Scripted]], make_sidecar: MakeSidecar
) -> None:
    raw = await scripted("raw")
    raw.default = trickle(as_bytes(chat_body("x" * 200)), every=0.02)  # never idle 20 ms
    doc = make_doc({"primary": up(raw.url, timeouts={"idle_ms": 200})}, gpt(timeout_ms=500))
    sc = await make_sidecar(doc)
    async with oai(sc) as c:
        err, elapsed = await timed(chat(c))
    assert isinstance(err, openai.APIStatusError) and err.status_code == 504, err
    assert 0.5 - 0.01 <= elapsed < 0.5 + SLACK
    assert await eventually(lambda: raw.abandoned == 1)


@pytest.mark.parametrize("shape", ["plain", "stream"])
async def test_a_deadline_passing_after_the_head_is_reported_as_deadline_exceeded(
    scripted: Callable[[str], Awaitable[Scripted]], make_sidecar: MakeSidecar, shape: str
) -> None:
    raw = await scripted("raw")
    if shape == "plain":
        raw.default = trickle(as_bytes(chat_body("x" * 200)), every=0.02)
    else:
        raw.default = sse([chat_chunk(f"w{i} ") for i in range(40)], delay=0.02)
    sc = await make_sidecar(make_doc({"primary": up(raw.url)}, gpt(timeout_ms=300)))
    status, _, body, _ = await post(sc, "/v1/chat/completions", chat_json(stream=shape == "stream"))
    if shape == "plain":
        assert status == 504
        assert error_code(body) == "deadline_exceeded"
    else:
        last = [e for e in body.split(b"\n\n") if e.strip()][-1]
        assert last.startswith(b'data: {"error"')
        assert error_code(last[len(b"data: ") :]) == "deadline_exceeded"


@pytest.mark.parametrize(
    "value", ["abc", "-5", "0", "nan", "inf", "-inf", "", " ", "1e999", "0x10", "5ms"]
)
async def test_garbage_timeout_headers_are_ignored(
    fake: FakeUpstream, make_sidecar: MakeSidecar, value: str
) -> None:
    sc = await make_sidecar(make_doc({"primary": up(fake.url)}, gpt()))
    fake.head_delay = 0.05
    status, headers, body, _ = await post(
        sc,
        "/v1/chat/completions",
        chat_json(),
        {"x-sidecar-timeout-ms": value, "x-stainless-timeout": value},
    )
    assert status == 200, body
    assert headers["x-sidecar-upstream"] == "primary"


@pytest.mark.parametrize(
    "headers",
    [
        {"x-sidecar-timeout-ms": "1"},
        {"x-sidecar-timeout-ms": "0.5"},
        {"x-stainless-timeout": "0.001"},
    ],
)
async def test_a_tiny_caller_deadline_gives_a_fast_504(
    fake: FakeUpstream, make_sidecar: MakeSidecar, headers: dict[str, str]
) -> None:
    sc = await make_sidecar(make_doc({"primary": up(fake.url)}, gpt()))
    fake.head_delay = 2.0
    status, _, body, elapsed = await post(sc, "/v1/chat/completions", chat_json(), headers)
    assert status == 504 and error_code(body) == "deadline_exceeded", body
    assert elapsed < SLACK
    await asyncio.sleep(0.05)
    assert len(fake.requests) == fake.abandoned  # nothing left running upstream


@pytest.mark.parametrize(
    "headers",
    [
        {"x-sidecar-timeout-ms": "5000"},
        {"x-stainless-timeout": "600"},
        {"x-sidecar-timeout-ms": "5000", "x-stainless-timeout": "600"},
    ],
)
async def test_the_caller_cannot_lengthen_the_bundle_deadline(
    fake: FakeUpstream, make_sidecar: MakeSidecar, headers: dict[str, str]
) -> None:
    doc = make_doc({"primary": up(fake.url, timeouts={"total_ms": 300})}, gpt())
    sc = await make_sidecar(doc)
    fake.head_delay = 2.0
    status, _, body, elapsed = await post(sc, "/v1/chat/completions", chat_json(), headers)
    assert status == 504 and error_code(body) == "deadline_exceeded", body
    assert 0.3 - 0.01 <= elapsed < 0.3 + SLACK


async def test_an_anthropic_callers_sdk_timeout_shortens_the_deadline(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    doc = make_doc(
        {"claude": up(fake.url, provider="anthropic")},
        gpt("claude"),
        claude={"upstream": "claude"},
    )
    sc = await make_sidecar(doc)
    fake.head_delay = 2.0
    async with claude(sc, default_headers={"x-stainless-timeout": "0.3"}) as c:
        err, elapsed = await timed(
            c.messages.create(
                model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            )
        )
    assert isinstance(err, anthropic.APIStatusError) and err.status_code == 504, err
    assert 0.3 - 0.01 <= elapsed < 0.3 + SLACK
    assert err.body is not None and "deadline" in json.dumps(err.body)


async def test_a_huge_retry_after_is_not_waited_past_the_deadline(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    retry = {"attempts": 5, "on": [429, 503], "max_backoff_ms": 600000}
    doc = make_doc({"primary": up(fake.url, retry=retry)}, gpt(timeout_ms=500))
    sc = await make_sidecar(doc)
    fake.fail_next(429, headers={"retry-after": "86400"}, times=5)
    async with oai(sc) as c:
        err, elapsed = await timed(chat(c))
    assert isinstance(err, openai.RateLimitError), err  # the upstream's own 429, at once
    assert err.response.headers["retry-after"] == "86400"
    assert elapsed < SLACK and len(fake.requests) == 1


async def test_first_byte_timeouts_are_retried_within_the_deadline(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    retry = {"attempts": 10, "on": ["timeout"], "backoff_ms": 1, "budget": {"min_retries": 50}}
    doc = make_doc(
        {"primary": up(fake.url, retry=retry, timeouts={"first_byte_ms": 150})},
        gpt(timeout_ms=500),
    )
    sc = await make_sidecar(doc)
    fake.head_delay = 5.0
    async with oai(sc) as c:
        err, elapsed = await timed(chat(c))
    assert isinstance(err, openai.APIStatusError) and err.status_code == 504, err
    assert 0.5 - 0.01 <= elapsed < 0.5 + SLACK
    assert 3 <= len(fake.requests) <= 4
    assert await eventually(lambda: fake.abandoned == len(fake.requests))
    text = await metrics(sc)
    assert metric_value(text, "sidecar_upstream_retries", {"reason": "timeout"}) >= 2


async def test_a_fallback_after_a_slow_primary_gets_only_the_time_left(
    fake: FakeUpstream, make_sidecar: MakeSidecar, fakes: Callable[[str], Awaitable[FakeUpstream]]
) -> None:
    backup = await fakes("backup")
    fake.head_delay = 5.0
    backup.head_delay = 5.0
    doc = make_doc(
        {"primary": up(fake.url, timeouts={"first_byte_ms": 300}), "backup": up(backup.url)},
        gpt(timeout_ms=700, fallbacks=[{"upstream": "backup"}]),
    )
    sc = await make_sidecar(doc)
    async with oai(sc) as c:
        err, elapsed = await timed(chat(c))
    assert isinstance(err, openai.APIStatusError) and err.status_code == 504, err
    assert 0.7 - 0.01 <= elapsed < 0.7 + SLACK
    assert await eventually(lambda: fake.abandoned == 1 and backup.abandoned == 1)


async def test_a_hedged_call_with_both_upstreams_slow_ends_at_the_deadline(
    fake: FakeUpstream, make_sidecar: MakeSidecar, fakes: Callable[[str], Awaitable[FakeUpstream]]
) -> None:
    backup = await fakes("backup")
    fake.head_delay = backup.head_delay = 5.0
    doc = make_doc(
        {"primary": up(fake.url), "backup": up(backup.url)},
        gpt(
            timeout_ms=400,
            idempotent=True,
            hedge={"after_ms": 100},
            fallbacks=[{"upstream": "backup"}],
        ),
    )
    sc = await make_sidecar(doc)
    async with oai(sc) as c:
        err, elapsed = await timed(c.embeddings.create(model="gpt-4o", input="x"))
    assert isinstance(err, openai.APIStatusError) and err.status_code == 504, err
    assert 0.4 - 0.01 <= elapsed < 0.4 + SLACK
    assert await eventually(lambda: fake.abandoned == 1 and backup.abandoned == 1)


async def test_an_openai_stream_outliving_the_deadline_ends_with_an_error_event(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(make_doc({"primary": up(fake.url)}, gpt(timeout_ms=350)))
    fake.stream_chunks, fake.chunk_delay = 20, 0.05  # never silent, but 1 s long
    got: list[str] = []
    async with oai(sc) as c:
        started = time.monotonic()  # the deadline runs from the request, not the client's set-up
        stream = await c.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "a b c d e f g h"}], stream=True
        )
        with pytest.raises(openai.APIError, match=r"timed out|deadline"):
            async with asyncio.timeout(5):
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        got.append(chunk.choices[0].delta.content)
    elapsed = time.monotonic() - started
    assert got and len(got) < 20
    assert elapsed < 0.35 + SLACK
    span = await sc.wait_for_span("chat gpt-4o")
    assert (span.attributes or {}).get("error.type")


async def test_an_anthropic_stream_outliving_the_deadline_ends_with_an_error_event(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    doc = make_doc(
        {"claude": up(fake.url, provider="anthropic")},
        gpt("claude"),
        claude={"upstream": "claude", "timeout_ms": 350},
    )
    sc = await make_sidecar(doc)
    fake.stream_chunks, fake.chunk_delay = 20, 0.05
    got: list[str] = []
    started = time.monotonic()
    async with claude(sc) as c:
        with pytest.raises(anthropic.APIStatusError, match=r"timed out|deadline"):
            async with (
                asyncio.timeout(5),
                c.messages.stream(
                    model="claude-x",
                    max_tokens=50,
                    messages=[{"role": "user", "content": "a b c d e f g h"}],
                ) as stream,
            ):
                async for text in stream.text_stream:
                    got.append(text)
    assert got and len(got) < 20
    assert time.monotonic() - started < 0.35 + SLACK


async def test_an_anthropic_stream_that_goes_silent_ends_with_an_error_event(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    doc = make_doc(
        {"claude": up(fake.url, provider="anthropic", timeouts={"idle_ms": 250})},
        gpt("claude"),
        claude={"upstream": "claude"},
    )
    sc = await make_sidecar(doc)
    fake.gate = asyncio.Event()  # never set: silence after the first delta
    started = time.monotonic()
    async with claude(sc) as c:
        with pytest.raises(anthropic.APIStatusError, match="timed out"):
            async with (
                asyncio.timeout(5),
                c.messages.stream(
                    model="claude-x",
                    max_tokens=50,
                    messages=[{"role": "user", "content": "one two three four"}],
                ) as stream,
            ):
                async for _ in stream:
                    pass
    assert time.monotonic() - started < 0.25 + 0.3


async def test_a_mock_stream_outliving_the_deadline_is_cut(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    doc = make_doc({"primary": up(fake.url)}, gpt())
    doc["upstreams"]["mock"]["chunk_delay_ms"] = 100
    doc["routes"][0]["timeout_ms"] = 300
    sc = await make_sidecar(doc)
    text = " ".join(f"w{i}" for i in range(8))  # 8 chunks, 0.7 s
    async with oai(sc) as c:
        started = time.monotonic()  # the deadline runs from the request, not the client's set-up
        stream = await c.chat.completions.create(
            model="mock-echo", messages=[{"role": "user", "content": text}], stream=True
        )
        with pytest.raises(openai.APIError):
            async with asyncio.timeout(5):
                async for _ in stream:
                    pass
    assert time.monotonic() - started < 0.3 + SLACK


# --- retries -----------------------------------------------------------------------------


async def test_no_retry_and_no_fallback_once_a_byte_reached_the_caller(
    fake: FakeUpstream, make_sidecar: MakeSidecar, fakes: Callable[[str], Awaitable[FakeUpstream]]
) -> None:
    backup = await fakes("backup")
    retry = {"attempts": 5, "on": ["reset", "connect", 502, 503], "backoff_ms": 1}
    doc = make_doc(
        {"primary": up(fake.url, retry=retry), "backup": up(backup.url)},
        gpt(fallbacks=[{"upstream": "backup"}]),
    )
    sc = await make_sidecar(doc)
    fake.stream_chunks, fake.abort_after_chunks = 6, 2
    got: list[str] = []
    async with oai(sc) as c:
        stream = await c.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "one two three"}], stream=True
        )
        with pytest.raises(openai.APIError, match="failed while streaming"):
            async with asyncio.timeout(5):
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        got.append(chunk.choices[0].delta.content)
    assert got
    await asyncio.sleep(0.1)
    assert len(fake.requests) == 1 and not backup.requests


async def test_a_stream_cut_between_events_ends_with_an_error_event_and_is_not_retried(
    scripted: Callable[[str], Awaitable[Scripted]], make_sidecar: MakeSidecar
) -> None:
    raw = await scripted("raw")
    raw.default = sse([chat_chunk("hello "), chat_chunk("there")], cut_mid_chunk=b"")
    retry = {"attempts": 3, "on": ["reset", "connect"], "backoff_ms": 1}
    sc = await make_sidecar(make_doc({"primary": up(raw.url, retry=retry)}, gpt()))
    got: list[str] = []
    async with oai(sc) as c:
        stream = await c.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True
        )
        with pytest.raises(openai.APIError, match="failed while streaming"):
            async with asyncio.timeout(5):
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        got.append(chunk.choices[0].delta.content)
    assert "".join(got) == "hello there"
    assert len(raw.requests) == 1


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_stream_cut_mid_event_still_ends_with_a_parseable_error_event(
    scripted: Callable[[str], Awaitable[Scripted]], make_sidecar: MakeSidecar, provider: str
) -> None:
    raw = await scripted("raw")
    retry = {"attempts": 3, "on": ["reset", "connect"], "backoff_ms": 1}
    if provider == "openai":
        raw.default = sse([chat_chunk("hello "), chat_chunk("there")], cut_mid_chunk=b"data: {")
        sc = await make_sidecar(make_doc({"primary": up(raw.url, retry=retry)}, gpt()))
        async with oai(sc) as c:
            stream = await c.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True
            )
            with pytest.raises(openai.APIError, match="failed while streaming"):
                async with asyncio.timeout(5):
                    async for _ in stream:
                        pass
    else:
        cut = b'event: content_block_delta\ndata: {"ty'
        raw.default = sse(anthropic_events("hello there"), cut_mid_chunk=cut)
        sc = await make_sidecar(
            make_doc(
                {"claude": up(raw.url, provider="anthropic", retry=retry)},
                gpt("claude"),
                claude={"upstream": "claude"},
            )
        )
        async with claude(sc) as ac:
            with pytest.raises(anthropic.APIStatusError, match="failed while streaming"):
                async with (
                    asyncio.timeout(5),
                    ac.messages.stream(
                        model="claude-x", max_tokens=9, messages=[{"role": "user", "content": "x"}]
                    ) as astream,
                ):
                    async for _ in astream:
                        pass
    assert len(raw.requests) == 1


async def test_a_broken_sse_stream_is_relayed_and_the_sidecar_keeps_serving(
    scripted: Callable[[str], Awaitable[Scripted]], make_sidecar: MakeSidecar
) -> None:
    raw = await scripted("raw")
    garbage = [chat_chunk("ok "), b"data: {not json at all\n\n", b"\xff\xfe\x00garbage\n\n"]
    raw.script = [sse(garbage)]
    sc = await make_sidecar(make_doc({"primary": up(raw.url)}, gpt()))
    status, _, body, _ = await post(sc, "/v1/chat/completions", chat_json(stream=True))
    assert status == 200
    assert b"{not json at all" in body and b"\xff\xfe\x00garbage" in body  # relayed as is
    async with oai(sc) as c:
        done = await chat(c)
    assert done.choices[0].message.content == "raw says hi"


async def test_a_plain_reply_broken_mid_body_is_retried(
    scripted: Callable[[str], Awaitable[Scripted]], make_sidecar: MakeSidecar
) -> None:
    raw = await scripted("raw")
    raw.script = [half_body_then_close(as_bytes(chat_body("broken " * 50)))]
    retry = {"attempts": 2, "on": ["reset", "connect"], "backoff_ms": 1}
    sc = await make_sidecar(make_doc({"primary": up(raw.url, retry=retry)}, gpt()))
    async with oai(sc) as c:
        result, _ = await timed(chat(c))
    assert len(raw.requests) == 2, result
    assert not isinstance(result, Exception), result
    assert result.choices[0].message.content == "raw says hi"


async def test_a_retried_body_is_byte_identical_and_only_the_fallback_is_rewritten(
    fake: FakeUpstream, make_sidecar: MakeSidecar, fakes: Callable[[str], Awaitable[FakeUpstream]]
) -> None:
    backup = await fakes("backup")
    retry = {"attempts": 3, "on": [503], "backoff_ms": 1}
    doc = make_doc(
        {"primary": up(fake.url, retry=retry), "backup": up(backup.url)},
        gpt(fallbacks=[{"upstream": "backup", "model": "my-deployment"}]),
    )
    sc = await make_sidecar(doc)
    body = (
        b'{ "model" : "gpt-4o",\n  "messages": [{"role":"user","content":"caf\\u00e9 '
        b'\xf0\x9f\x98\x80 \\"q\\""}],\n  "temperature": 0.50, "n": 1e0, "user": "u" }'
    )
    fake.fail_next(503, times=3)
    status, headers, _, _ = await post(sc, "/v1/chat/completions", body)
    assert status == 200 and headers["x-sidecar-upstream"] == "backup"
    assert [r.body for r in fake.requests] == [body, body, body]
    sent = backup.last_request.json()
    assert sent.pop("model") == "my-deployment"
    original = json.loads(body)
    original.pop("model")
    assert sent == original
    assert list(json.loads(backup.last_request.body)) == list(json.loads(body))  # key order


@pytest.mark.parametrize(
    "hints",
    [
        {"retry-after-ms": "Wed, 21 Oct 2015 07:28:00 GMT"},
        {"retry-after-ms": "-100"},
        {"retry-after": "-3"},
        {"retry-after": "soon"},
        {"retry-after": "nan"},
        {"retry-after-ms": "inf"},
        {"retry-after": "1e400"},
        {"retry-after-ms": ""},
        {"x-should-retry": "TRUE"},
    ],
)
async def test_garbage_retry_hints_fall_back_to_the_jittered_backoff(
    fake: FakeUpstream, make_sidecar: MakeSidecar, hints: dict[str, str]
) -> None:
    retry = {"attempts": 2, "on": [429], "backoff_ms": 1, "max_backoff_ms": 50}
    sc = await make_sidecar(make_doc({"primary": up(fake.url, retry=retry)}, gpt()))
    fake.fail_next(429, headers=hints)
    async with oai(sc) as c:
        done, elapsed = await timed(chat(c))
    assert not isinstance(done, Exception), done
    assert len(fake.requests) == 2 and elapsed < 0.3


async def test_a_caller_leaving_during_the_back_off_stops_the_retries(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    retry = {"attempts": 3, "on": [503], "backoff_ms": 1}
    sc = await make_sidecar(make_doc({"primary": up(fake.url, retry=retry)}, gpt()))
    fake.fail_next(503, headers={"retry-after-ms": "400"}, times=3)
    async with oai(sc) as c:
        call = asyncio.ensure_future(chat(c))
        await fake.wait_for_requests(1)
        await asyncio.sleep(0.1)
        call.cancel()  # the caller goes away while the sidecar backs off
        with contextlib.suppress(asyncio.CancelledError):
            await call
    span = await sc.wait_for_span("chat gpt-4o")
    assert (span.attributes or {}).get("error.type")
    await asyncio.sleep(0.5)
    assert len(fake.requests) == 1  # no retry for a caller who left


async def test_a_date_in_retry_after_ms_falls_through_to_retry_after(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    retry = {"attempts": 2, "on": [429], "backoff_ms": 1}
    sc = await make_sidecar(make_doc({"primary": up(fake.url, retry=retry)}, gpt()))
    fake.fail_next(
        429, headers={"retry-after-ms": "Wed, 21 Oct 2015 07:28:00 GMT", "retry-after": "0.3"}
    )
    async with oai(sc) as c:
        _, elapsed = await timed(chat(c))
    gap = fake.requests[1].received_at - fake.requests[0].received_at
    assert len(fake.requests) == 2 and gap >= 0.29 and elapsed < 0.3 + SLACK


async def test_an_http_date_retry_after_is_honoured(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    retry = {"attempts": 2, "on": [503], "backoff_ms": 1}
    sc = await make_sidecar(make_doc({"primary": up(fake.url, retry=retry)}, gpt()))
    when = email.utils.formatdate(time.time() + 2, usegmt=True)  # 1-2 s from now
    fake.fail_next(503, headers={"retry-after": when})
    async with oai(sc) as c:
        await timed(chat(c))
    assert len(fake.requests) == 2
    assert fake.requests[1].received_at - fake.requests[0].received_at >= 0.9


async def test_x_should_retry_false_is_read_case_insensitively(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    retry = {"attempts": 3, "on": [503], "backoff_ms": 1}
    sc = await make_sidecar(make_doc({"primary": up(fake.url, retry=retry)}, gpt()))
    fake.fail_next(503, headers={"x-should-retry": " FALSE "})
    async with oai(sc) as c:
        err, _ = await timed(chat(c))
    assert isinstance(err, openai.InternalServerError)
    assert len(fake.requests) == 1


@pytest.mark.parametrize("where", ["retry.on", "fallback_on"])
async def test_4xx_statuses_listed_for_retry_or_fallback_are_honoured(
    fake: FakeUpstream,
    make_sidecar: MakeSidecar,
    fakes: Callable[[str], Awaitable[FakeUpstream]],
    where: str,
) -> None:
    backup = await fakes("backup")
    if where == "retry.on":
        retry = {"attempts": 2, "on": [408], "backoff_ms": 1}
        doc = make_doc({"primary": up(fake.url, retry=retry)}, gpt())
        fake.fail_next(408)
    else:
        doc = make_doc(
            {"primary": up(fake.url), "backup": up(backup.url)},
            gpt(fallbacks=[{"upstream": "backup"}], fallback_on=[404, 503]),
        )
        fake.fail_next(404)
    sc = await make_sidecar(doc)
    async with oai(sc) as c:
        result, _ = await timed(raw_chat(c))
    assert not isinstance(result, Exception), result


async def test_the_retry_budget_holds_under_concurrent_resets(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    retry = {
        "attempts": 4,
        "on": ["reset", "connect"],
        "backoff_ms": 1,
        "budget": {"ratio": 0.0, "min_retries": 5, "window_s": 60},
    }
    lenient = {"consecutive_failures": 1000, "min_calls": 1000}
    sc = await make_sidecar(
        make_doc({"primary": up(fake.url, retry=retry, breaker=lenient)}, gpt())
    )
    fake.reset_next(10_000)
    async with oai(sc) as c:
        results = await asyncio.wait_for(
            asyncio.gather(
                *(
                    c.chat.completions.create(
                        model="gpt-4o", messages=[{"role": "user", "content": "x"}]
                    )
                    for _ in range(30)
                ),
                return_exceptions=True,
            ),
            10,
        )
    assert all(isinstance(r, openai.APIStatusError) and r.status_code == 502 for r in results)
    assert len(fake.requests) == 30 + 5
    text = await metrics(sc)
    assert metric_value(text, "sidecar_upstream_retries", {"reason": "reset"}) == 5


async def test_hedges_spend_the_retry_budget_under_concurrency(
    fake: FakeUpstream, make_sidecar: MakeSidecar, fakes: Callable[[str], Awaitable[FakeUpstream]]
) -> None:
    backup = await fakes("backup")
    budget = {"ratio": 0.0, "min_retries": 2, "window_s": 60}
    doc = make_doc(
        {"primary": up(fake.url, retry={"budget": budget}), "backup": up(backup.url)},
        gpt(idempotent=True, hedge={"after_ms": 50}, fallbacks=[{"upstream": "backup"}]),
    )
    sc = await make_sidecar(doc)
    fake.head_delay = 0.3
    async with oai(sc) as c:
        results = await asyncio.wait_for(
            asyncio.gather(*(c.embeddings.create(model="gpt-4o", input="x") for _ in range(8))),
            10,
        )
    assert len(results) == 8
    assert len(backup.requests) == 2  # only the budget's worth of hedges
    assert metric_value(await metrics(sc), "sidecar_route_hedges") == 2


# --- circuit breakers ----------------------------------------------------------------------


async def test_many_concurrent_failures_open_the_breaker_once(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    breaker = {"consecutive_failures": 3, "open_ms": 300, "max_open_ms": 60000, "probes": 1}
    doc = make_doc({"primary": up(fake.url, retry={"attempts": 1}, breaker=breaker)}, gpt())
    sc = await make_sidecar(doc)
    fake.head_delay = 0.1  # all 20 in flight together
    fake.fail_next(500, times=20)
    async with oai(sc) as c:
        results = await asyncio.wait_for(
            asyncio.gather(*(chat(c) for _ in range(20)), return_exceptions=True), 10
        )
        assert all(isinstance(r, openai.InternalServerError) for r in results)
        assert (await breakers(sc))["primary"] == "open"
        fake.head_delay = 0.0
        err, _ = await timed(chat(c))
        assert isinstance(err, openai.InternalServerError) and err.status_code == 503
        # Opened once, so open for 300 ms (not 300 ms x 2^k): a probe goes through after it.
        await asyncio.sleep(0.35)
        done = await chat(c)
    assert done.choices[0].message.content
    assert (await breakers(sc))["primary"] == "closed"


async def test_half_open_admits_exactly_the_probes_under_a_burst(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    breaker = {"consecutive_failures": 2, "open_ms": 200, "probes": 2}
    doc = make_doc({"primary": up(fake.url, retry={"attempts": 1}, breaker=breaker)}, gpt())
    sc = await make_sidecar(doc)
    fake.fail_next(500, times=2)
    async with oai(sc) as c:
        for _ in range(2):
            await timed(chat(c))
        assert (await breakers(sc))["primary"] == "open"
        await asyncio.sleep(0.25)
        fake.head_delay = 0.2  # the probes stay in flight while the burst arrives
        results = await asyncio.wait_for(
            asyncio.gather(*(chat(c) for _ in range(12)), return_exceptions=True), 10
        )
    ok = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, openai.APIStatusError) and r.status_code == 503]
    assert (len(ok), len(refused)) == (2, 10)
    assert len(fake.requests) == 2 + 2
    assert (await breakers(sc))["primary"] == "closed"


async def test_a_probe_whose_caller_disconnects_frees_its_slot(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    breaker = {"consecutive_failures": 1, "open_ms": 150, "probes": 1}
    doc = make_doc({"primary": up(fake.url, retry={"attempts": 1}, breaker=breaker)}, gpt())
    sc = await make_sidecar(doc)
    fake.fail_next(500)
    async with oai(sc) as c:
        await timed(chat(c))
        await asyncio.sleep(0.2)
        fake.head_delay = 3.0
        probe = asyncio.ensure_future(chat(c))
        await fake.wait_for_requests(2)
        probe.cancel()  # the caller hangs up on the probe
        with contextlib.suppress(asyncio.CancelledError):
            await probe
        assert await eventually(lambda: fake.abandoned == 1)
        fake.head_delay = 0.0
        done = await chat(c)  # the next call is let through as the probe
    assert done.choices[0].message.content
    assert (await breakers(sc))["primary"] == "closed"


async def test_a_failed_probe_doubles_the_open_period(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    breaker = {"consecutive_failures": 1, "open_ms": 200, "max_open_ms": 10000, "probes": 1}
    doc = make_doc({"primary": up(fake.url, retry={"attempts": 1}, breaker=breaker)}, gpt())
    sc = await make_sidecar(doc)
    fake.fail_next(500, times=2)
    gauge = "sidecar_upstream_breaker_state"
    async with oai(sc) as c:
        await timed(chat(c))  # opens for 200 ms
        await asyncio.sleep(0.25)
        err, _ = await timed(chat(c))  # the probe fails: open again, for 400 ms
        assert isinstance(err, openai.InternalServerError) and err.status_code == 500
        await asyncio.sleep(0.25)
        err, _ = await timed(chat(c))
        assert isinstance(err, openai.InternalServerError) and err.status_code == 503, err
        assert err.response.headers["retry-after"] == "1"
        assert metric_value(await metrics(sc), gauge, {"sidecar_upstream": "primary"}) == 2
        await asyncio.sleep(0.2)
        await chat(c)  # past 400 ms: the next probe passes and closes it
    assert len(fake.requests) == 3
    assert metric_value(await metrics(sc), gauge, {"sidecar_upstream": "primary"}) == 0


async def test_a_call_started_before_the_breaker_opened_is_not_a_probe(
    scripted: Callable[[str], Awaitable[Scripted]], make_sidecar: MakeSidecar
) -> None:
    raw = await scripted("raw")
    release_old, release_probe = asyncio.Event(), asyncio.Event()
    ok = chat_body("raw says hi")
    raw.script = [
        reply(200, ok, after=release_old),  # an old call, slow
        reply(500, {"error": {"message": "down"}}),
        reply(500, {"error": {"message": "down"}}),  # the breaker opens
        reply(500, {"error": {"message": "still down"}}, after=release_probe),  # the probe
    ]
    breaker = {"consecutive_failures": 2, "open_ms": 200, "probes": 1}
    doc = make_doc({"primary": up(raw.url, retry={"attempts": 1}, breaker=breaker)}, gpt())
    sc = await make_sidecar(doc)
    try:
        async with oai(sc) as c:
            old = asyncio.ensure_future(chat(c))
            await raw.wait_for_requests(1)
            for _ in range(2):
                await timed(chat(c))
            assert (await breakers(sc))["primary"] == "open"
            await asyncio.sleep(0.25)
            probe = asyncio.ensure_future(timed(chat(c)))
            await raw.wait_for_requests(4)
            release_old.set()
            await asyncio.wait_for(old, 3)  # the old call succeeds while the probe is out
            err, _ = await timed(chat(c))  # half-open, its one probe in flight: refused
            assert isinstance(err, openai.APIStatusError) and err.status_code == 503, err
            assert len(raw.requests) == 4
    finally:
        release_old.set()
        release_probe.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(probe, 3)


async def test_429s_never_open_the_breaker(fake: FakeUpstream, make_sidecar: MakeSidecar) -> None:
    breaker = {"consecutive_failures": 2, "min_calls": 2, "failure_ratio": 0.1}
    doc = make_doc({"primary": up(fake.url, retry={"attempts": 1}, breaker=breaker)}, gpt())
    sc = await make_sidecar(doc)
    fake.fail_next(429, times=10)
    async with oai(sc) as c:
        for _ in range(10):
            err, _ = await timed(chat(c))
            assert isinstance(err, openai.RateLimitError)
        await chat(c)
    assert (await breakers(sc))["primary"] == "closed"
    assert len(fake.requests) == 11


async def test_an_open_breaker_survives_a_bundle_reload(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    breaker = {"consecutive_failures": 2, "open_ms": 30000}
    doc = make_doc({"primary": up(fake.url, retry={"attempts": 1}, breaker=breaker)}, gpt())
    sc = await make_sidecar(doc)
    fake.fail_next(500, times=2)
    async with oai(sc) as c:
        for _ in range(2):
            await timed(chat(c))
        changed = {"consecutive_failures": 3, "open_ms": 20000, "probes": 1}
        doc2 = make_doc(
            {"primary": up(fake.url, retry={"attempts": 2}, breaker=changed)},
            gpt(),
            revision="r2",
        )
        sc.write_bundle(doc2)
        assert await sc.sidecar.reload("test") == "success"
        err, elapsed = await timed(chat(c))
    assert isinstance(err, openai.APIStatusError) and err.status_code == 503, err
    assert "circuit breaker is open" in str(err)
    assert err.response.headers["x-sidecar-bundle-revision"] == "r2"
    assert elapsed < SLACK and len(fake.requests) == 2
    assert (await breakers(sc))["primary"] == "open"


async def test_the_primarys_answer_passes_through_when_the_fallback_is_open(
    fake: FakeUpstream, make_sidecar: MakeSidecar, fakes: Callable[[str], Awaitable[FakeUpstream]]
) -> None:
    backup = await fakes("backup")
    doc = make_doc(
        {
            "primary": up(fake.url, retry={"attempts": 1}),
            "backup": up(
                backup.url,
                retry={"attempts": 1},
                breaker={"consecutive_failures": 1, "open_ms": 30000},
            ),
        },
        gpt(fallbacks=[{"upstream": "backup"}]),
    )
    sc = await make_sidecar(doc)
    fake.fail_next(503, times=2, body={"error": {"message": "primary's own words"}})
    backup.fail_next(500)
    async with oai(sc) as c:
        await timed(chat(c))  # primary 503, backup 500: the backup's breaker opens
        assert (await breakers(sc))["backup"] == "open"
        err, _ = await timed(chat(c))
    assert isinstance(err, openai.APIStatusError)
    assert "primary's own words" in str(err), err


# --- fallbacks -----------------------------------------------------------------------------


async def test_a_chain_of_three_upstreams_rewrites_the_model_per_hop(
    make_sidecar: MakeSidecar, fakes: Callable[[str], Awaitable[FakeUpstream]]
) -> None:
    second, third = await fakes("second"), await fakes("third")
    doc = make_doc(
        {
            "primary": up(await dead_url(), retry={"attempts": 2, "backoff_ms": 1}),
            "second": up(second.url),
            "third": up(third.url),
        },
        gpt(
            fallbacks=[
                {"upstream": "second", "model": "dep-second"},
                {"upstream": "third", "model": "dep-third"},
            ]
        ),
    )
    sc = await make_sidecar(doc)
    second.fail_next(503)
    async with oai(sc) as c:
        raw = await raw_chat(c, "chain")
    assert raw.headers["x-sidecar-upstream"] == "third"
    assert raw.parse().choices[0].message.content == "third says: chain"
    assert second.last_request.json()["model"] == "dep-second"
    assert third.last_request.json()["model"] == "dep-third"
    span = await sc.wait_for_span("chat gpt-4o")
    assert (span.attributes or {})["sidecar.upstream"] == "third"
    attempts = [s.name for s in sc.finished() if s.name.startswith("POST ")]
    assert attempts == ["POST primary", "POST primary", "POST second", "POST third"]
    text = await metrics(sc)
    assert metric_value(text, "sidecar_route_fallbacks", {"sidecar_upstream": "second"}) == 1
    assert metric_value(text, "sidecar_route_fallbacks", {"sidecar_upstream": "third"}) == 1
    assert (
        metric_value(
            text,
            "sidecar_requests",
            {"sidecar_upstream": "third", "http_response_status_code": "200"},
        )
        == 1
    )


async def test_the_last_upstreams_own_error_passes_through_a_chain(
    fake: FakeUpstream, make_sidecar: MakeSidecar, fakes: Callable[[str], Awaitable[FakeUpstream]]
) -> None:
    second, third = await fakes("second"), await fakes("third")
    doc = make_doc(
        {"primary": up(fake.url), "second": up(second.url), "third": up(third.url)},
        gpt(fallbacks=[{"upstream": "second"}, {"upstream": "third"}]),
    )
    sc = await make_sidecar(doc)
    fake.fail_next(500)
    second.fail_next(429)
    third.fail_next(503, body={"error": {"message": "third is tired"}}, headers={"x-t": "3"})
    async with oai(sc) as c:
        err, _ = await timed(chat(c))
    assert isinstance(err, openai.APIStatusError) and err.status_code == 503
    assert "third is tired" in str(err)
    assert err.response.headers["x-t"] == "3"
    assert err.response.headers["x-sidecar-upstream"] == "third"


async def test_fallback_to_the_builtin_mock_with_a_model_rewrite(
    make_sidecar: MakeSidecar,
) -> None:
    doc = make_doc(
        {"primary": up(await dead_url(), retry={"attempts": 1})},
        gpt(fallbacks=[{"upstream": "mock", "model": "mock-echo"}]),
    )
    sc = await make_sidecar(doc)
    async with oai(sc) as c:
        raw = await raw_chat(c, "echo me")
        stream = await c.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "stream me"}], stream=True
        )
        async with asyncio.timeout(5):
            text = "".join([ch.choices[0].delta.content or "" async for ch in stream if ch.choices])
    assert raw.headers["x-sidecar-upstream"] == "mock"
    reply_ = raw.parse()
    assert reply_.choices[0].message.content == "echo me" and reply_.model == "mock-echo"
    assert text == "stream me"


async def test_streams_through_a_fallback_for_both_sdks(
    fake: FakeUpstream, make_sidecar: MakeSidecar, fakes: Callable[[str], Awaitable[FakeUpstream]]
) -> None:
    backup = await fakes("backup")
    doc = make_doc(
        {
            "primary": up(fake.url),
            "backup": up(backup.url),
            "claude": up(fake.url, provider="anthropic"),
            "claude2": up(backup.url, provider="anthropic"),
        },
        gpt(fallbacks=[{"upstream": "backup"}]),
        claude={"upstream": "claude", "fallbacks": [{"upstream": "claude2"}]},
    )
    sc = await make_sidecar(doc)
    fake.fail_next(503, times=2)
    async with oai(sc) as c:
        resp = await c.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "one two"}], stream=True
        )
        assert resp.headers["x-sidecar-upstream"] == "backup"
        stream = resp.parse()
        async with asyncio.timeout(5):
            text = "".join([ch.choices[0].delta.content or "" async for ch in stream if ch.choices])
    assert text == "backup says: one two"
    async with (
        claude(sc) as ac,
        asyncio.timeout(5),
        ac.messages.stream(
            model="claude-x", max_tokens=50, messages=[{"role": "user", "content": "three"}]
        ) as astream,
    ):
        atext = "".join([t async for t in astream.text_stream])
    assert atext == "backup says: three"
    assert len(backup.requests) == 2


# --- hedging ------------------------------------------------------------------------------


async def test_a_hedge_where_both_answer_in_the_same_instant_is_counted_once(
    scripted: Callable[[str], Awaitable[Scripted]], make_sidecar: MakeSidecar, tmp_path: Path
) -> None:
    first, second = await scripted("first"), await scripted("second")
    go = asyncio.Event()
    first.script = [reply(200, embedding_body(0.25), after=go)]
    second.script = [reply(200, embedding_body(0.75), after=go)]
    doc = make_doc(
        {"primary": up(first.url), "backup": up(second.url)},
        gpt(idempotent=True, hedge={"after_ms": 30}, fallbacks=[{"upstream": "backup"}]),
    )
    log = tmp_path / "decisions.jsonl"
    sc = await make_sidecar(doc, decision_log=str(log))
    async with oai(sc) as c:
        call = asyncio.ensure_future(
            asyncio.wait_for(c.embeddings.with_raw_response.create(model="gpt-4o", input="x"), 5)
        )
        await first.wait_for_requests(1)
        await second.wait_for_requests(1)
        go.set()  # both answer in the same loop turn
        raw = await call
    served = raw.headers["x-sidecar-upstream"]
    value = raw.parse().data[0].embedding[0]
    assert (served, value) in {("primary", 0.25), ("backup", 0.75)}
    span = await sc.wait_for_span("embeddings gpt-4o")
    assert (span.attributes or {})["sidecar.upstream"] == served
    await asyncio.sleep(0.05)
    assert len(sc.finished("embeddings gpt-4o")) == 1
    text = await metrics(sc)
    assert metric_value(text, "sidecar_requests") == 1
    assert metric_value(text, "sidecar_route_hedges") == 1
    await sc.sidecar.stop()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["upstream"] == served and lines[0]["status"] == 200


async def test_a_hedge_rescues_a_call_stuck_connecting_to_a_black_hole(
    black_hole: str, make_sidecar: MakeSidecar, fakes: Callable[[str], Awaitable[FakeUpstream]]
) -> None:
    backup = await fakes("backup")
    doc = make_doc(
        {"primary": up(black_hole), "backup": up(backup.url)},
        gpt(
            idempotent=True,
            hedge={"after_ms": 100},
            fallbacks=[{"upstream": "backup", "model": "emb-deployment"}],
        ),
    )
    sc = await make_sidecar(doc)
    async with oai(sc) as c:
        raw, elapsed = await timed(c.embeddings.with_raw_response.create(model="gpt-4o", input="x"))
    assert not isinstance(raw, Exception), raw
    assert raw.headers["x-sidecar-upstream"] == "backup"
    assert 0.1 <= elapsed < 0.1 + SLACK
    attempts = {s.name: s for s in sc.finished() if s.name.startswith("POST ")}
    assert set(attempts) == {"POST primary", "POST backup"}  # the loser's span ended too
    assert backup.last_request.json()["model"] == "emb-deployment"  # the hedge's own name


async def test_a_primary_failing_fast_on_a_hedged_route_falls_back_without_a_hedge(
    fake: FakeUpstream, make_sidecar: MakeSidecar, fakes: Callable[[str], Awaitable[FakeUpstream]]
) -> None:
    backup = await fakes("backup")
    doc = make_doc(
        {"primary": up(fake.url), "backup": up(backup.url)},
        gpt(idempotent=True, hedge={"after_ms": 500}, fallbacks=[{"upstream": "backup"}]),
    )
    sc = await make_sidecar(doc)
    fake.fail_next(503)
    async with oai(sc) as c:
        raw, elapsed = await timed(c.embeddings.with_raw_response.create(model="gpt-4o", input="x"))
    assert not isinstance(raw, Exception), raw
    assert raw.headers["x-sidecar-upstream"] == "backup" and elapsed < 0.3
    text = await metrics(sc)
    assert metric_value(text, "sidecar_route_hedges") == 0
    assert metric_value(text, "sidecar_route_fallbacks", {"sidecar_upstream": "backup"}) == 1


async def test_a_primary_refusing_connections_on_a_hedged_route_falls_back(
    make_sidecar: MakeSidecar, fakes: Callable[[str], Awaitable[FakeUpstream]]
) -> None:
    backup = await fakes("backup")
    doc = make_doc(
        {"primary": up(await dead_url(), retry={"backoff_ms": 1}), "backup": up(backup.url)},
        gpt(idempotent=True, hedge={"after_ms": 500}, fallbacks=[{"upstream": "backup"}]),
    )
    sc = await make_sidecar(doc)
    async with oai(sc) as c:
        raw, elapsed = await timed(c.embeddings.with_raw_response.create(model="gpt-4o", input="x"))
    assert not isinstance(raw, Exception), raw
    assert raw.headers["x-sidecar-upstream"] == "backup" and elapsed < 0.3
    assert len(backup.requests) == 1


async def test_a_failed_hedge_still_moves_on_to_the_next_fallback(
    fake: FakeUpstream, make_sidecar: MakeSidecar, fakes: Callable[[str], Awaitable[FakeUpstream]]
) -> None:
    backup, third = await fakes("backup"), await fakes("third")
    doc = make_doc(
        {"primary": up(fake.url), "backup": up(backup.url), "third": up(third.url)},
        gpt(
            idempotent=True,
            hedge={"after_ms": 50},
            fallbacks=[{"upstream": "backup"}, {"upstream": "third"}],
        ),
    )
    sc = await make_sidecar(doc)
    fake.head_delay = 0.2
    fake.fail_next(503)
    backup.fail_next(503)
    async with oai(sc) as c:
        raw, _ = await timed(c.embeddings.with_raw_response.create(model="gpt-4o", input="x"))
    assert not isinstance(raw, Exception), raw
    assert raw.headers["x-sidecar-upstream"] == "third"


async def test_a_p95_hedge_waits_for_20_samples_then_hedges_at_the_p95(
    fake: FakeUpstream, make_sidecar: MakeSidecar, fakes: Callable[[str], Awaitable[FakeUpstream]]
) -> None:
    backup = await fakes("backup")
    doc = make_doc(
        {"primary": up(fake.url), "backup": up(backup.url)},
        gpt(idempotent=True, hedge={"after": "p95"}, fallbacks=[{"upstream": "backup"}]),
    )
    sc = await make_sidecar(doc)
    fake.head_delay = 0.01
    async with oai(sc) as c:
        for _ in range(20):
            await asyncio.wait_for(c.embeddings.create(model="gpt-4o", input="x"), 5)
        assert not backup.requests  # no hedge before 20 first answers are known
        fake.head_delay = 2.0
        raw, elapsed = await timed(c.embeddings.with_raw_response.create(model="gpt-4o", input="x"))
    assert not isinstance(raw, Exception), raw
    assert raw.headers["x-sidecar-upstream"] == "backup" and elapsed < 0.2
    assert await eventually(lambda: fake.abandoned == 1)


async def test_a_failed_hedge_passes_the_last_upstreams_error_through(
    fake: FakeUpstream, make_sidecar: MakeSidecar, fakes: Callable[[str], Awaitable[FakeUpstream]]
) -> None:
    backup = await fakes("backup")
    doc = make_doc(
        {"primary": up(fake.url), "backup": up(backup.url)},
        gpt(idempotent=True, hedge={"after_ms": 50}, fallbacks=[{"upstream": "backup"}]),
    )
    sc = await make_sidecar(doc)
    fake.head_delay = 0.2
    fake.fail_next(503)
    backup.fail_next(500, body={"error": {"message": "backup's own words"}})
    async with oai(sc) as c:
        err, _ = await timed(c.embeddings.create(model="gpt-4o", input="x"))
    assert isinstance(err, openai.APIStatusError)
    assert (err.status_code, "backup's own words" in str(err)) == (500, True), err


async def test_a_caller_leaving_during_the_hedge_delay_cancels_the_primary(
    fake: FakeUpstream, make_sidecar: MakeSidecar, fakes: Callable[[str], Awaitable[FakeUpstream]]
) -> None:
    backup = await fakes("backup")
    doc = make_doc(
        {"primary": up(fake.url), "backup": up(backup.url)},
        gpt(idempotent=True, hedge={"after_ms": 2000}, fallbacks=[{"upstream": "backup"}]),
    )
    sc = await make_sidecar(doc)
    fake.head_delay = 0.8
    try:
        async with oai(sc) as c:
            call = asyncio.ensure_future(c.embeddings.create(model="gpt-4o", input="x"))
            await fake.wait_for_requests(1)
            await asyncio.sleep(0.05)
            call.cancel()  # the caller goes away
            with contextlib.suppress(asyncio.CancelledError):
                await call
        assert await eventually(lambda: fake.abandoned == 1, within=0.5)
    finally:
        await asyncio.sleep(0.8)  # let an orphaned attempt end before the sidecar stops


@pytest.mark.parametrize(
    "route",
    [
        {"hedge": {"after_ms": 5}, "idempotent": False, "fallbacks": [{"upstream": "backup"}]},
        {"hedge": {"after": "p95"}, "fallbacks": [{"upstream": "backup"}]},
        {"hedge": {"after_ms": 0}, "idempotent": True, "fallbacks": [{"upstream": "backup"}]},
        {
            "hedge": {"after_ms": 5, "after": "p95"},
            "idempotent": True,
            "fallbacks": [{"upstream": "backup"}],
        },
        {"hedge": {}, "idempotent": True, "fallbacks": [{"upstream": "backup"}]},
        {"timeout_ms": 0},
        {"timeout_ms": -5},
    ],
)
async def test_invalid_hedges_and_deadlines_are_refused(
    fake: FakeUpstream, make_sidecar: MakeSidecar, route: dict[str, Any]
) -> None:
    ups = {"primary": up(fake.url), "backup": up(fake.url)}
    sc = await make_sidecar(make_doc(ups, gpt()))
    sc.write_bundle(make_doc(ups, gpt(**route), revision="r2"))
    assert await sc.sidecar.reload("test") == "error"
    async with oai(sc) as c:
        raw = await raw_chat(c)
    assert raw.headers["x-sidecar-bundle-revision"] == "r1"  # the old bundle still serves
