"""Two sidecar processes share one real redis-server: together they admit exactly the limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from e2e.harness import SidecarLauncher, metric_value, standard_bundle, write_bundle
from fakes.redis_server import RedisServer
from fakes.upstream import FakeUpstream


@pytest.fixture
async def redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path)
    await server.start()
    yield server
    await server.stop()


async def test_two_processes_share_one_limit_exactly(
    tmp_path: Path,
    launch: SidecarLauncher,
    fake: FakeUpstream,
    fake_claude: FakeUpstream,
    redis: RedisServer,
) -> None:
    doc = standard_bundle(fake.url, fake_claude.url)
    # Exactness is the point here, not the timeout: a loaded machine must not turn a slow
    # Redis answer into a store error.
    doc["redis"] = {"url": {"env": "TEST_REDIS_URL"}, "timeout_ms": 5000}
    doc["limits"] = [
        {
            "id": "team",
            "store": "redis",
            "key": ["tenant"],
            "requests": {"limit": 50, "per": "1h"},
            "on_store_error": "closed",  # a store error would show as a 503, not pass
        }
    ]
    bundle = write_bundle(tmp_path / "bundle", doc)
    env = {"TEST_REDIS_URL": redis.url}
    a, b = await asyncio.gather(launch(bundle, env=env), launch(bundle, env=env))

    async def burst(client: openai.AsyncOpenAI, n: int) -> list[Any]:
        async with client:
            return await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model="gpt-4o", messages=[{"role": "user", "content": f"call {i}"}]
                    )
                    for i in range(n)
                ),
                return_exceptions=True,
            )

    results = [
        r
        for batch in await asyncio.gather(burst(a.openai(), 60), burst(b.openai(), 60))
        for r in batch
    ]
    admitted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert len(admitted) == 50, [type(r).__name__ for r in results if isinstance(r, Exception)][:5]
    assert len(refused) == 70
    assert len(fake.requests_to("/v1/chat/completions")) == 50
    for sc in (a, b):
        _, text = await sc.admin_get("/metrics")
        assert metric_value(text, "sidecar_limit_store_errors_total") == 0
