"""No caller can pin the sidecar's resources: time, connections, memory.

Each test drives a real `sidecar run` process over raw sockets or the real SDKs,
with the real fake upstream behind it, and tries one way to hold on to the
sidecar: hanging up behind pipelined requests, trickling a body, opening
connections, holding unfinished bodies, an upstream answering without end, a
stream still running when the shutdown grace ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from e2e.harness import Sidecar, SidecarLauncher
from fakes.upstream import FakeUpstream

T = 5.0
CHAT = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).encode()


def post(path: str, body: bytes, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: sidecar", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def head(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: sidecar", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def connect(sc: Sidecar) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", sc.http_port), T)


async def read_reply(
    reader: asyncio.StreamReader, within: float = T
) -> tuple[int, dict[str, str], Any]:
    """One whole response with a Content-Length body: status, headers (lower-case), JSON."""
    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), within)
    status_line, *lines = raw[:-4].decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), within)
    return int(status_line.split()[1]), headers, json.loads(body)


async def wait_until(predicate: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


# --- the caller hangs up --------------------------------------------------------------------


async def test_hanging_up_behind_pipelined_requests_cancels_the_upstream_call(
    launch: SidecarLauncher, bundle_dir: Path, fake: FakeUpstream
) -> None:
    sc = await launch(bundle_dir)
    fake.head_delay = 60.0  # a slow provider: the first call waits here
    _, writer = await connect(sc)
    writer.write(post("/v1/chat/completions", CHAT) * 12)  # past the 8 parsed ahead
    await writer.drain()
    await fake.wait_for_requests(1)
    writer.close()
    await wait_until(lambda: fake.abandoned == 1, T, "the upstream call to be cancelled")
    assert len(fake.requests) == 1, "requests behind the hang-up were still sent upstream"


# --- slow bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "within"),
    [({"SIDECAR_BODY_TIMEOUT_MS": "1500"}, 4.0), ({}, 9.0)],
    ids=["total-deadline", "minimum-rate"],
)
async def test_a_body_trickling_in_gets_408(
    launch: SidecarLauncher,
    bundle_dir: Path,
    fake: FakeUpstream,
    env: dict[str, str],
    within: float,
) -> None:
    sc = await launch(bundle_dir, env=env)
    reader, writer = await connect(sc)
    writer.write(head("/v1/chat/completions", f"Content-Length: {len(CHAT)}"))

    async def trickle() -> None:
        for byte in CHAT:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.25)

    sender = asyncio.create_task(trickle())
    try:
        status, headers, body = await read_reply(reader, within)
    finally:
        sender.cancel()
    assert status == 408
    assert body["error"]["code"] == "request_timeout"
    assert headers["connection"] == "close"
    assert not fake.requests
    async with sc.openai() as client:  # and the sidecar serves on
        await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )


# --- connections and held bytes -------------------------------------------------------------


async def test_connections_past_the_cap_get_503_and_a_freed_slot_serves_again(
    launch: SidecarLauncher, bundle_dir: Path
) -> None:
    sc = await launch(bundle_dir, env={"SIDECAR_MAX_CONNECTIONS": "3"})
    held = [await connect(sc) for _ in range(3)]
    await asyncio.sleep(0.2)
    reader, writer = await connect(sc)
    status, headers, body = await read_reply(reader)
    assert status == 503
    assert headers["retry-after"] == "1"
    assert "at most 3 connections" in body["error"]["message"]
    writer.close()
    held.pop()[1].close()
    await asyncio.sleep(0.3)
    reader, writer = await connect(sc)
    writer.write(post("/v1/chat/completions", CHAT))
    status, _, _ = await read_reply(reader)
    assert status == 200
    for _, w in held:
        w.close()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_bodies_past_the_buffered_budget_get_503_with_retry_after(
    launch: SidecarLauncher, bundle_dir: Path, fake: FakeUpstream, framing: str
) -> None:
    env = {"SIDECAR_MAX_BODY_BYTES": str(1 << 20), "SIDECAR_MAX_BUFFERED_BYTES": str(2 << 20)}
    sc = await launch(bundle_dir, env=env)
    holders = []
    for _ in range(2):  # two unfinished bodies of 900 KiB each: 1.8 MiB held
        reader, writer = await connect(sc)
        writer.write(head("/v1/chat/completions", "Content-Length: 1000000") + b"x" * 900_000)
        await writer.drain()
        holders.append(writer)
    await asyncio.sleep(0.3)
    reader, writer = await connect(sc)
    anthropic_head = ("anthropic-version: 2023-06-01",)
    if framing == "content-length":
        writer.write(head("/v1/messages", "Content-Length: 400000", *anthropic_head))
    else:
        chunk = b"y" * 400_000
        writer.write(head("/v1/messages", "Transfer-Encoding: chunked", *anthropic_head))
        writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
    status, headers, body = await read_reply(reader)
    assert status == 503
    assert headers["retry-after"] == "1"
    assert body["type"] == "error" and body["error"]["type"] == "overloaded_error"
    for w in holders:
        w.close()
    await asyncio.sleep(0.3)  # their bytes are let go: a new body fits again
    async with sc.anthropic() as client:
        await client.messages.create(
            model="claude-fake-1",
            max_tokens=5,
            messages=[{"role": "user", "content": "z" * 500_000}],
        )
    assert not fake.requests


# --- upstream answers without end -----------------------------------------------------------

BOUNDS = {"SIDECAR_MAX_EVENT_BYTES": "65536", "SIDECAR_MAX_RESPONSE_BYTES": "262144"}


def endless_line() -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        yield b"data: "
        for _ in range(40):  # 800 KB and never a newline
            yield b"a" * 20_000

    return gen()


def many_events() -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        delta = {"choices": [{"index": 0, "delta": {"content": "b" * 4000}}], "object": "x"}
        for _ in range(100):  # 400 KB of small, whole events
            yield b"data: " + json.dumps(delta).encode() + b"\n\n"

    return gen()


@pytest.mark.parametrize(
    ("source", "what"),
    [(endless_line, "an event larger than 65536"), (many_events, "a response larger than 262144")],
    ids=["event", "response"],
)
async def test_an_oversized_stream_ends_with_an_error_event(
    launch: SidecarLauncher,
    bundle_dir: Path,
    fake: FakeUpstream,
    source: Callable[[], AsyncIterator[bytes]],
    what: str,
) -> None:
    sc = await launch(bundle_dir, env=BOUNDS)
    fake.raw_stream = source
    async with sc.openai() as client:
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        with pytest.raises(openai.APIError, match=what):
            async for _ in stream:
                pass


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
async def test_an_oversized_plain_reply_is_a_502_in_the_callers_shape(
    launch: SidecarLauncher, bundle_dir: Path, fake: FakeUpstream, encoding: str
) -> None:
    sc = await launch(bundle_dir, env=BOUNDS)
    reply = json.dumps({"id": "x", "object": "chat.completion", "pad": "c" * 300_000}).encode()
    if encoding == "gzip":  # 300 KB that arrive as under 1 KB
        fake.fail_next(200, gzip.compress(reply), headers={"Content-Encoding": "gzip"})
    else:
        fake.fail_next(200, reply)
    async with sc.openai() as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
            )
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_response_too_large"


# --- shutdown -------------------------------------------------------------------------------


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
async def test_a_stream_cut_at_the_end_of_the_grace_ends_with_an_error_event(
    launch: SidecarLauncher,
    bundle_dir: Path,
    fake: FakeUpstream,
    fake_claude: FakeUpstream,
    sdk: str,
) -> None:
    sc = await launch(bundle_dir, env={"SIDECAR_SHUTDOWN_GRACE_MS": "500"})
    for upstream in (fake, fake_claude):
        upstream.stream_chunks = 60
        upstream.chunk_delay = 0.2  # a 12 s stream
    error: type[Exception] = openai.APIError if sdk == "openai" else anthropic.APIError
    with pytest.raises(error, match="shutting down"):
        if sdk == "openai":
            async with sc.openai() as oc:
                stream = await oc.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
                )
                async for _ in stream:
                    sc.proc.send_signal(signal.SIGTERM)
        else:
            async with sc.anthropic() as ac:
                astream = await ac.messages.create(
                    model="claude-fake-1",
                    max_tokens=50,
                    messages=[{"role": "user", "content": "hi"}],
                    stream=True,
                )
                async for _ in astream:
                    sc.proc.send_signal(signal.SIGTERM)
    await wait_until(lambda: sc.proc.poll() is not None, T, "the sidecar to exit")
    assert sc.proc.returncode == 0


# --- all of it at once ----------------------------------------------------------------------

MIB = 1 << 20


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def small_call_seconds(sc: Sidecar) -> float:
    """One small chat call to the in-process mock, on a fresh connection."""
    body = json.dumps({"model": "mock-echo", "messages": [{"role": "user", "content": "hi"}]})
    started = time.perf_counter()
    reader, writer = await connect(sc)
    writer.write(post("/v1/chat/completions", body.encode()))
    status, _, _ = await read_reply(reader)
    elapsed = time.perf_counter() - started
    writer.close()
    assert status == 200
    return elapsed


async def median_small_call(sc: Sidecar, n: int = 7) -> float:
    times = sorted([await small_call_seconds(sc) for _ in range(n)])
    return times[n // 2]


async def test_slow_clients_and_held_bodies_stay_within_the_budget_and_memory_comes_back(
    launch: SidecarLauncher, bundle_dir: Path
) -> None:
    budget = 64 * MIB  # the default: four bodies of the default 16 MiB limit
    sc = await launch(bundle_dir)
    await median_small_call(sc)  # warm up the call path before measuring anything
    await asyncio.sleep(1.0)
    start_rss = rss_bytes(sc.proc.pid)
    quiet = await median_small_call(sc)

    stalled = []
    for i in range(50):  # half stall inside a head, half trickle a body
        reader, writer = await connect(sc)
        if i % 2:
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: s\r\nContent-Le")
        else:
            writer.write(head("/v1/chat/completions", "Content-Length: 100000") + b"{")
        stalled.append(writer)
    body_part = b"x" * (15 * MIB)
    holders = []
    for _ in range(20):  # 15 MiB of a 16 MiB body each, never finished
        reader, writer = await connect(sc)
        writer.write(head("/v1/chat/completions", f"Content-Length: {16 * MIB}") + body_part)
        holders.append((reader, writer))

    async def drained(writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await writer.drain()

    await asyncio.wait_for(asyncio.gather(*(drained(w) for _, w in holders)), 30)
    refused = 0
    for reader, _ in holders:  # those past the budget were answered 503 and closed
        with contextlib.suppress(TimeoutError):
            status, _, _ = await read_reply(reader, within=0.5)
            refused += status == 503
    assert refused >= 16, f"only {refused} of 20 held bodies were refused"

    peak = rss_bytes(sc.proc.pid)
    loaded = await median_small_call(sc)
    peak = max(peak, rss_bytes(sc.proc.pid))
    assert peak - start_rss <= budget + 30 * MIB, (
        f"RSS grew by {(peak - start_rss) / MIB:.0f} MiB under load"
    )
    assert loaded - quiet <= 0.100, f"a small call took {loaded * 1000:.0f} ms under load"

    for writer in stalled + [w for _, w in holders]:
        writer.close()
    with contextlib.suppress(AssertionError):
        await wait_until(lambda: rss_bytes(sc.proc.pid) <= start_rss * 1.10, 10, "RSS to fall back")
    after = rss_bytes(sc.proc.pid)
    assert after <= start_rss * 1.10, (
        f"RSS stayed at {after / MIB:.0f} MiB after the load; it was {start_rss / MIB:.0f} MiB"
    )
