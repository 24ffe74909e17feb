"""Trying to break graceful shutdown: streams longer than the grace, signals sent twice,
SIGINT, and calls still waiting for their first byte when the grace runs out."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from e2e.harness import Sidecar, SidecarLauncher
from fakes.upstream import FakeUpstream

BODY = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "go on"}]}


async def exit_code(sc: Sidecar, within: float) -> int | None:
    """The process's exit code once it exits, or None if it still runs after `within` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if sc.proc.poll() is not None:
            return sc.proc.returncode
        await asyncio.sleep(0.02)
    return sc.proc.poll()


async def read_stream(resp: aiohttp.ClientResponse) -> tuple[bytes, BaseException | None]:
    """Everything the stream delivered, and the error that ended it (None: it completed)."""
    got = b""
    try:
        async for piece in resp.content.iter_any():
            got += piece
    except (aiohttp.ClientError, ConnectionError) as exc:
        return got, exc
    return got, None


async def test_a_stream_longer_than_the_grace_is_cut_and_the_process_exits_0(
    launch: SidecarLauncher, bundle_dir: Path, fake: FakeUpstream
) -> None:
    env = {"SIDECAR_DRAIN_DELAY_MS": "100", "SIDECAR_SHUTDOWN_GRACE_MS": "600"}
    sc = await launch(bundle_dir, env=env)
    fake.stream_chunks, fake.chunk_delay = 100, 0.05  # a 5 s stream
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{sc.openai_base}/chat/completions",
            json=BODY,
            timeout=aiohttp.ClientTimeout(total=10),
        )
        assert resp.status == 200
        first = await asyncio.wait_for(resp.content.readany(), 5)
        assert first.startswith(b"data: ")
        sent = time.monotonic()
        sc.proc.send_signal(signal.SIGTERM)
        got, err = await asyncio.wait_for(read_stream(resp), 5)
        cut_after = time.monotonic() - sent
    # Cut: the stream ends with an error event the SDKs raise, never with [DONE].
    assert err is None, err
    last = got.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
    assert last.startswith(b'data: {"error"') and b"sidecar_shutting_down" in last, last
    assert b"[DONE]" not in got
    assert 0.1 + 0.6 - 0.05 <= cut_after < 0.1 + 0.6 + 0.5
    assert await exit_code(sc, within=2.0) == 0, sc.stderr()[-2000:]
    assert time.monotonic() - sent < 0.1 + 0.6 + 1.5
    assert fake.streams_completed == 0  # the upstream stream was given up too


async def test_sigterm_twice_still_drains_and_finishes_calls_in_flight(
    launch: SidecarLauncher, bundle_dir: Path, fake: FakeUpstream
) -> None:
    env = {"SIDECAR_DRAIN_DELAY_MS": "500", "SIDECAR_SHUTDOWN_GRACE_MS": "5000"}
    sc = await launch(bundle_dir, env=env)
    fake.stream_chunks, fake.chunk_delay = 10, 0.1  # a 1 s stream
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{sc.openai_base}/chat/completions",
            json=BODY,
            timeout=aiohttp.ClientTimeout(total=10),
        )
        await asyncio.wait_for(resp.content.readany(), 5)
        sc.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.1)
        sc.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.1)
        # Still draining: not ready, but a new call is accepted and served.
        async with http.get(f"{sc.admin}/readyz") as ready:
            assert ready.status == 503
        async with http.post(
            f"{sc.openai_base}/chat/completions",
            json={**BODY, "stream": False},
            timeout=aiohttp.ClientTimeout(total=5),
        ) as late:
            assert late.status == 200
        got, err = await asyncio.wait_for(read_stream(resp), 5)
    assert err is None and got.rstrip().endswith(b"data: [DONE]")
    assert await exit_code(sc, within=3.0) == 0, sc.stderr()[-2000:]


async def test_sigint_skips_the_drain_delay_but_lets_streams_finish(
    launch: SidecarLauncher, bundle_dir: Path, fake: FakeUpstream
) -> None:
    env = {"SIDECAR_DRAIN_DELAY_MS": "5000", "SIDECAR_SHUTDOWN_GRACE_MS": "5000"}
    sc = await launch(bundle_dir, env=env)
    fake.stream_chunks, fake.chunk_delay = 10, 0.1
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{sc.openai_base}/chat/completions",
            json=BODY,
            timeout=aiohttp.ClientTimeout(total=10),
        )
        await asyncio.wait_for(resp.content.readany(), 5)
        sent = time.monotonic()
        sc.proc.send_signal(signal.SIGINT)
        await asyncio.sleep(0.3)
        assert not await sc.proxy_accepts()  # no drain delay on SIGINT
        got, err = await asyncio.wait_for(read_stream(resp), 5)
    assert err is None and got.rstrip().endswith(b"data: [DONE]")
    assert await exit_code(sc, within=3.0) == 0, sc.stderr()[-2000:]
    assert time.monotonic() - sent < 3.0


async def test_a_call_still_waiting_for_its_first_byte_is_cut_at_the_grace(
    launch: SidecarLauncher, bundle_dir: Path, fake: FakeUpstream
) -> None:
    env = {"SIDECAR_DRAIN_DELAY_MS": "0", "SIDECAR_SHUTDOWN_GRACE_MS": "500"}
    sc = await launch(bundle_dir, env=env)
    fake.head_delay = 10.0
    async with aiohttp.ClientSession() as http:
        call = asyncio.ensure_future(
            http.post(
                f"{sc.openai_base}/chat/completions",
                json={**BODY, "stream": False},
                timeout=aiohttp.ClientTimeout(total=10),
            )
        )
        await fake.wait_for_requests(1)
        sent = time.monotonic()
        sc.proc.send_signal(signal.SIGTERM)
        with pytest.raises((aiohttp.ClientError, ConnectionError)):
            async with await asyncio.wait_for(call, 5):
                pass
        assert 0.5 - 0.05 <= time.monotonic() - sent < 0.5 + 0.5
    assert await exit_code(sc, within=2.0) == 0, sc.stderr()[-2000:]
    for _ in range(100):
        if fake.abandoned:
            break
        await asyncio.sleep(0.01)
    assert fake.abandoned == 1  # the upstream request was cancelled, not left running


async def test_sigint_during_a_sigterm_drain_stops_at_once(
    launch: SidecarLauncher, bundle_dir: Path, fake: FakeUpstream
) -> None:
    env = {"SIDECAR_DRAIN_DELAY_MS": "2500", "SIDECAR_SHUTDOWN_GRACE_MS": "1000"}
    sc = await launch(bundle_dir, env=env)
    sc.proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.2)
    sc.proc.send_signal(signal.SIGINT)
    assert await exit_code(sc, within=1.0) == 0, sc.stderr()[-2000:]
