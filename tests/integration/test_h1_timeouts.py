"""The proxy listener's head timeout is the documented one, not the idle timeout's.

A head that trickles in was only looked at when the idle timer fired (75 s by
default), so the documented 30 s head limit was 75 s in practice. These tests
shorten the head limit and keep the idle timeout long, over raw sockets.
"""

from __future__ import annotations

import asyncio

import pytest

from integration.test_h1_server import Echo, get, json_reply, serving
from sidecar.replies import Reply
from sidecar.server import h1


@pytest.mark.parametrize(
    "partial",
    [b"", b"POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\nContent-Le"],
    ids=["nothing-yet", "half-a-head"],
)
async def test_a_head_that_does_not_arrive_in_time_closes_before_the_idle_timeout(
    monkeypatch: pytest.MonkeyPatch, partial: bytes
) -> None:
    monkeypatch.setattr(h1, "HEAD_TIMEOUT_S", 0.5)
    echo = Echo()
    async with serving(echo, idle_timeout=20.0) as s:
        client = await s.connect()
        if partial:
            await client.send(partial)
        assert await client.closed(within=3.0), "the head timeout did not close the connection"
        assert echo.seen == []


async def test_the_head_clock_starts_with_each_request_not_with_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(h1, "HEAD_TIMEOUT_S", 0.5)
    echo = Echo()
    async with serving(echo, idle_timeout=20.0) as s:
        client = await s.connect()
        for _ in range(3):  # a keep-alive connection that sends a request every 0.3 s
            resp = await client.request(b"GET /a HTTP/1.1\r\nHost: test\r\n\r\n")
            assert resp.status == 200
            await asyncio.sleep(0.3)
        assert len(echo.seen) == 3


async def test_a_body_waiting_for_its_100_continue_is_not_timed_out() -> None:
    release = asyncio.Event()

    async def handler(request: h1.Request) -> Reply:
        if request.path == "/slow":
            await release.wait()
        return json_reply({"path": request.path, "body": request.body.decode()})

    async with serving(handler, body_timeout=0.5) as s:
        client = await s.connect()
        await client.send(
            get("/slow") + get("/next", "Content-Length: 5", "Expect: 100-continue", method="POST")
        )
        await asyncio.sleep(1.5)  # three body timeouts while the 100 is owed
        release.set()
        assert (await client.read_response()).status == 200  # /slow
        interim = await client.read_head()
        assert interim.status == 100
        await client.send(b"hello")
        resp = await client.read_response()
        assert resp.status == 200 and resp.json()["body"] == "hello"
