"""Bad input and broken configuration: a clear error in the caller's shape, and service goes on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from fakes.upstream import FakeUpstream
from integration.conftest import MakeSidecar, Running, openai_bundle


async def post(
    sc: Running, path: str, data: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{sc.base}{path}", data=data, headers=headers) as resp,
    ):
        return resp.status, await resp.json(), dict(resp.headers)


async def still_serving(sc: Running) -> None:
    client = openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key="agent")
    reply = await client.chat.completions.create(
        model="mock-echo", messages=[{"role": "user", "content": "ok?"}]
    )
    assert reply.choices[0].message.content == "ok?"


async def test_malformed_json_in_each_shape(fake: FakeUpstream, make_sidecar: MakeSidecar) -> None:
    sc = await make_sidecar(openai_bundle(fake))
    status, body, headers = await post(sc, "/v1/chat/completions", b'{"model": "gpt-4o", ')
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert "not valid JSON" in body["error"]["message"]
    assert headers["x-sidecar-bundle-revision"] == "r1" and headers["x-sidecar-decision-id"]
    status, body, _ = await post(sc, "/v1/messages", b"[]")
    assert status == 400
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert fake.requests == []
    await still_serving(sc)


async def test_body_limit_with_and_without_content_length(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(openai_bundle(fake), max_body_bytes=1000)
    client = openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key="agent", max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x" * 2000}]
        )
    assert info.value.status_code == 413
    assert "at most 1000 bytes" in info.value.message

    async def chunked() -> AsyncIterator[bytes]:
        yield b'{"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "'
        for _ in range(50):
            yield b"y" * 100
        yield b'"}]}'

    status, body, _ = await post(sc, "/v1/messages", chunked())
    assert status == 413
    assert body["error"]["type"] == "request_too_large"
    aclient = anthropic.AsyncAnthropic(base_url=sc.base, api_key="agent", max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as ainfo:
        await aclient.messages.create(
            model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "z" * 2000}]
        )
    assert ainfo.value.status_code == 413
    assert fake.requests == []
    await still_serving(sc)


async def test_missing_upstream_key_is_a_clear_non_retried_error(
    fake: FakeUpstream, make_sidecar: MakeSidecar, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FAKE_UPSTREAM_KEY")
    doc = openai_bundle(fake)
    doc["upstreams"]["fake"]["api_key"] = {"env": "NOT_SET_ANYWHERE"}
    sc = await make_sidecar(doc)
    client = openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key="agent", max_retries=3)
    with pytest.raises(openai.InternalServerError) as info:
        await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 500  # the sidecar's configuration, not an outage
    assert "NOT_SET_ANYWHERE" in info.value.message
    assert info.value.response.headers["x-should-retry"] == "false"
    assert fake.requests == []  # and the SDK did not retry: one request only reached us
    await still_serving(sc)


async def test_unreachable_upstream_is_502(make_sidecar: MakeSidecar) -> None:
    dead = FakeUpstream()
    await dead.start()
    url = dead.url
    await dead.stop()
    doc = openai_bundle(dead)
    doc["upstreams"]["fake"]["base_url"] = url
    sc = await make_sidecar(doc)
    client = openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key="agent", max_retries=0)
    with pytest.raises(openai.InternalServerError) as info:
        await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 502
    assert "upstream 'fake' failed" in info.value.message
    await still_serving(sc)


async def test_not_ready_until_a_valid_bundle(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(
        {"apiVersion": "sidecar/v1", "revision": "bad", "routes": [{"upstream": "nope"}]}
    )
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{sc.admin}/readyz") as resp:
            assert resp.status == 503
        async with http.get(f"{sc.admin}/bundle") as resp:
            status = await resp.json()
            assert status["ready"] is False
            assert "routes[0].upstream: unknown upstream 'nope'" in status["last_error"]["problems"]
        async with http.get(f"{sc.admin}/healthz") as resp:
            assert resp.status == 200
    client = openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key="agent", max_retries=0)
    with pytest.raises(openai.InternalServerError) as info:
        await client.chat.completions.create(
            model="mock-echo", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 503
    assert info.value.response.headers["retry-after"] == "1"

    sc.write_bundle(openai_bundle(fake))
    assert await sc.sidecar.reload() == "success"
    async with aiohttp.ClientSession() as http, http.get(f"{sc.admin}/readyz") as resp:
        assert resp.status == 200
    await still_serving(sc)


async def test_models_in_both_shapes(fake: FakeUpstream, make_sidecar: MakeSidecar) -> None:
    doc = openai_bundle(fake)
    doc["upstreams"]["fake"]["models"] = ["gpt-4o", "gpt-4o-mini", "not-routed"]
    sc = await make_sidecar(doc)
    client = openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key="agent")
    assert [m.id async for m in client.models.list()] == ["gpt-4o", "gpt-4o-mini", "mock-echo"]
    assert (await client.models.retrieve("gpt-4o")).id == "gpt-4o"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("not-routed")
    aclient = anthropic.AsyncAnthropic(base_url=sc.base, api_key="agent")
    page = await aclient.models.list()
    assert [m.id for m in page.data] == ["gpt-4o", "gpt-4o-mini", "mock-echo"]
    assert fake.requests == []


async def test_unknown_path_is_a_provider_shaped_404(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(openai_bundle(fake))
    status, body, _ = await post(sc, "/v1/images/generations", b"{}")
    assert (
        status == 404 and "does not serve POST /v1/images/generations" in body["error"]["message"]
    )


async def test_wrong_method_is_a_provider_shaped_405(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(openai_bundle(fake))
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{sc.base}/v1/chat/completions") as resp:
            assert resp.status == 405 and resp.headers["allow"] == "POST"
            body = await resp.json()
            assert "GET is not allowed on /v1/chat/completions" in body["error"]["message"]
        async with http.put(f"{sc.base}/v1/messages") as resp:
            assert resp.status == 405
            assert (await resp.json())["type"] == "error"
        async with http.post(f"{sc.base}/v1/models") as resp:
            assert resp.status == 405 and resp.headers["allow"] == "GET"
    await still_serving(sc)
