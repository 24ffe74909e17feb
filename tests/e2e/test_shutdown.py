"""SIGTERM: not ready at once, new calls refused after the drain delay, calls in flight finish."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import openai

from e2e.harness import SidecarLauncher
from fakes.upstream import FakeUpstream


async def test_sigterm_during_20_streams_finishes_them_refuses_new_calls_and_exits_0(
    launch: SidecarLauncher, bundle_dir: object, fake: FakeUpstream
) -> None:
    env = {"SIDECAR_DRAIN_DELAY_MS": "300", "SIDECAR_SHUTDOWN_GRACE_MS": "10000"}
    sc = await launch(bundle_dir, env=env)  # type: ignore[arg-type]
    fake.stream_chunks = 10
    fake.chunk_delay = 0.15  # each stream lasts about 1.5 s

    async def one(i: int) -> str:
        async with sc.openai(timeout=30) as c:
            stream = await c.chat.completions.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": f"stream {i}"}],
                stream=True,
            )
            return "".join([ch.choices[0].delta.content or "" async for ch in stream if ch.choices])

    streams = [asyncio.create_task(one(i)) for i in range(20)]
    for _ in range(200):
        if fake.streams_started >= 20:
            break
        await asyncio.sleep(0.02)
    assert fake.streams_started == 20
    sc.proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.1)
    async with aiohttp.ClientSession() as http, http.get(f"{sc.admin}/readyz") as resp:
        assert resp.status == 503  # not ready at once, while the streams still run
    await asyncio.sleep(0.4)  # past the drain delay: the listener is closed
    assert not await sc.proxy_accepts()
    texts = await asyncio.gather(*streams)
    assert all(text == fake.reply_for(f"stream {i}") for i, text in enumerate(texts))
    for _ in range(250):
        if sc.proc.poll() is not None:
            break
        await asyncio.sleep(0.02)
    assert sc.proc.returncode == 0, sc.stderr()[-2000:]
    async with sc.openai() as c:
        try:
            await c.models.list()
        except openai.APIConnectionError:
            pass
        else:
            raise AssertionError("a call was accepted after shutdown")
