"""Errors speak the caller's protocol, and the sidecar keeps serving after each.

SPEC: malformed JSON -> 400, no route -> 404 naming the model, body over
--max-body-bytes -> 413, upstream refused -> 502, upstream error statuses and
bodies passed through unchanged; OpenAI shape ``{"error": {message, type, param,
code}}``, Anthropic shape ``{"type": "error", "error": {type, message}}`` on
/v1/messages*; x-sidecar-decision-id / x-sidecar-bundle-revision on errors too.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from fakes.upstream import FakeUpstream

from .harness import Sidecar, SidecarLauncher, free_port, standard_bundle, write_bundle

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "ok?"}]}
MESSAGES = {
    "model": "claude-fake-1",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "ok?"}],
}


def assert_openai_error_shape(body: Any) -> dict[str, Any]:
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    error: dict[str, Any] = body["error"]
    assert {"message", "type", "param", "code"} <= error.keys(), error
    assert isinstance(error["message"], str) and error["message"], error
    return error


def assert_anthropic_error_shape(body: Any) -> dict[str, Any]:
    assert isinstance(body, dict) and body.get("type") == "error", body
    error = body.get("error")
    assert isinstance(error, dict), body
    assert isinstance(error.get("type"), str) and error["type"], body
    assert isinstance(error.get("message"), str) and error["message"], body
    return error


def assert_sidecar_headers(headers: Any, revision: str = "r1") -> None:
    assert headers.get("x-sidecar-decision-id"), dict(headers)
    assert headers.get("x-sidecar-bundle-revision") == revision, dict(headers)


async def still_serving(sidecar: Sidecar) -> None:
    """A normal OpenAI and a normal Anthropic call both succeed."""
    chat = await sidecar.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "still there?"}]
    )
    assert chat.choices[0].message.content == "fake says: still there?"
    msg = await sidecar.anthropic().messages.create(
        model="claude-fake-1", max_tokens=16, messages=[{"role": "user", "content": "and you?"}]
    )
    assert msg.content[0].type == "text"
    assert msg.content[0].text == "claudefake says: and you?"


async def raw_post(url: str, body: bytes) -> tuple[int, Any, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url,
            data=body,
            headers={"Content-Type": "application/json", "anthropic-version": "2023-06-01"},
        ) as resp,
    ):
        text = await resp.text()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
        return resp.status, parsed, resp.headers.copy()


async def test_malformed_json_openai(
    sidecar: Sidecar, fake: FakeUpstream, fake_claude: FakeUpstream
) -> None:
    for path in ("/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/responses"):
        status, body, headers = await raw_post(f"{sidecar.url}{path}", b'{"model": "gpt-4o", ')
        assert status == 400, (path, body)
        assert_openai_error_shape(body)
        assert_sidecar_headers(headers)
    status, body, _ = await raw_post(f"{sidecar.openai_base}/chat/completions", b"[1, 2, 3]")
    assert status == 400, ("JSON that is not an object", body)
    assert_openai_error_shape(body)
    assert fake.requests == [], "malformed JSON was forwarded upstream"
    await still_serving(sidecar)


async def test_malformed_json_anthropic(sidecar: Sidecar, fake_claude: FakeUpstream) -> None:
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        status, body, headers = await raw_post(f"{sidecar.url}{path}", b"not json at all")
        assert status == 400, (path, body)
        error = assert_anthropic_error_shape(body)
        assert error["type"] == "invalid_request_error"
        assert_sidecar_headers(headers)
    assert fake_claude.requests == []
    await still_serving(sidecar)


async def test_no_route_openai(sidecar: Sidecar, fake: FakeUpstream) -> None:
    with pytest.raises(openai.NotFoundError) as excinfo:
        await sidecar.openai().chat.completions.create(
            model="nomatch-model-xyz", messages=[{"role": "user", "content": "hi"}]
        )
    err = excinfo.value
    assert "nomatch-model-xyz" in err.message
    assert_openai_error_shape(err.response.json())
    assert_sidecar_headers(err.response.headers)
    assert fake.requests == []
    await still_serving(sidecar)


async def test_no_route_anthropic(sidecar: Sidecar, fake_claude: FakeUpstream) -> None:
    with pytest.raises(anthropic.NotFoundError) as excinfo:
        await sidecar.anthropic().messages.create(
            model="unrouted-model-abc", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    err = excinfo.value
    assert "unrouted-model-abc" in err.message
    error = assert_anthropic_error_shape(err.response.json())
    assert error["type"] == "not_found_error"
    assert_sidecar_headers(err.response.headers)
    assert fake_claude.requests == []
    await still_serving(sidecar)


async def test_body_over_limit_413(
    tmp_path: Path,
    launch: SidecarLauncher,
    bundle_dir: Path,
    fake: FakeUpstream,
    fake_claude: FakeUpstream,
) -> None:
    sc = await launch(bundle_dir, extra_args=["--max-body-bytes", "4096"])
    big = "x" * 6000
    with pytest.raises(openai.APIStatusError) as excinfo:
        await sc.openai().chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": big}]
        )
    assert excinfo.value.status_code == 413
    assert_openai_error_shape(excinfo.value.response.json())
    assert_sidecar_headers(excinfo.value.response.headers)

    with pytest.raises(anthropic.APIStatusError) as aexc:
        await sc.anthropic().messages.create(
            model="claude-fake-1", max_tokens=8, messages=[{"role": "user", "content": big}]
        )
    assert aexc.value.status_code == 413
    assert isinstance(aexc.value, anthropic.ContentTooLargeError)
    assert_anthropic_error_shape(aexc.value.response.json())
    assert fake.requests == [] and fake_claude.requests == []

    # Just under the limit still works, and so does everything after.
    small = "y" * 2000
    ok = await sc.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": small}]
    )
    assert ok.choices[0].message.content == f"fake says: {small}"
    await still_serving(sc)


async def test_body_limit_from_env(
    launch: SidecarLauncher, bundle_dir: Path, fake: FakeUpstream, fake_claude: FakeUpstream
) -> None:
    sc = await launch(bundle_dir, env={"SIDECAR_MAX_BODY_BYTES": "3000"})
    with pytest.raises(openai.APIStatusError) as excinfo:
        await sc.openai().chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "z" * 5000}]
        )
    assert excinfo.value.status_code == 413
    assert fake.requests == []
    await still_serving(sc)


async def test_default_body_limit_allows_a_large_prompt(
    sidecar: Sidecar, fake: FakeUpstream
) -> None:
    """The default limit is 16 MiB, so a 2 MiB prompt must pass."""
    big = "w" * (2 * 1024 * 1024)
    ok = await sidecar.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": big}]
    )
    assert ok.choices[0].message.content == f"fake says: {big}"


OPENAI_500 = {
    "error": {
        "message": "upstream exploded (500)",
        "type": "server_error",
        "param": None,
        "code": "boom",
    }
}
OPENAI_429 = {
    "error": {
        "message": "Rate limit reached for gpt-4o, retry in 7s",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
}


async def test_upstream_500_passthrough(sidecar: Sidecar, fake: FakeUpstream) -> None:
    fake.fail_next(500, OPENAI_500)
    with pytest.raises(openai.InternalServerError) as excinfo:
        await sidecar.openai().chat.completions.create(**CHAT)  # type: ignore[call-overload]
    err = excinfo.value
    assert err.status_code == 500
    assert err.response.json() == OPENAI_500
    assert "upstream exploded (500)" in err.message
    assert_sidecar_headers(err.response.headers)
    assert len(fake.requests) == 1, "the sidecar retried or dropped the call"
    await still_serving(sidecar)


async def test_upstream_429_passthrough(sidecar: Sidecar, fake: FakeUpstream) -> None:
    fake.fail_next(429, OPENAI_429)
    with pytest.raises(openai.RateLimitError) as excinfo:
        await sidecar.openai().chat.completions.create(**CHAT)  # type: ignore[call-overload]
    err = excinfo.value
    assert err.status_code == 429
    assert err.response.json() == OPENAI_429
    assert "retry in 7s" in err.message
    assert_sidecar_headers(err.response.headers)
    await still_serving(sidecar)


async def test_upstream_error_on_stream_request(sidecar: Sidecar, fake: FakeUpstream) -> None:
    fake.fail_next(429, OPENAI_429)
    with pytest.raises(openai.RateLimitError) as excinfo:
        await sidecar.openai().chat.completions.create(stream=True, **CHAT)  # type: ignore[call-overload]
    assert excinfo.value.response.json() == OPENAI_429
    await still_serving(sidecar)


async def test_anthropic_upstream_errors_passthrough(
    sidecar: Sidecar, fake_claude: FakeUpstream
) -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    fake_claude.fail_next(529, overloaded)
    with pytest.raises(anthropic.APIStatusError) as excinfo:
        await sidecar.anthropic().messages.create(**MESSAGES)  # type: ignore[call-overload]
    assert excinfo.value.status_code == 529
    assert excinfo.value.response.json() == overloaded
    assert_sidecar_headers(excinfo.value.response.headers)

    limited = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    fake_claude.fail_next(429, limited)
    with pytest.raises(anthropic.RateLimitError) as rexc:
        await sidecar.anthropic().messages.create(**MESSAGES)  # type: ignore[call-overload]
    assert rexc.value.response.json() == limited
    await still_serving(sidecar)


async def test_upstream_down_502(
    tmp_path: Path, launch: SidecarLauncher, fake: FakeUpstream, fake_claude: FakeUpstream
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    bundle = standard_bundle(fake.url, fake_claude.url)
    bundle["upstreams"]["dead"] = {"provider": "openai", "base_url": dead}
    bundle["upstreams"]["deadclaude"] = {"provider": "anthropic", "base_url": dead}
    bundle["routes"] = [
        {"match": {"model": "dead-*"}, "upstream": "dead"},
        {"match": {"model": "deadclaude-*"}, "upstream": "deadclaude"},
        *bundle["routes"],
    ]
    sc = await launch(write_bundle(tmp_path / "b", bundle))

    with pytest.raises(openai.APIStatusError) as excinfo:
        await sc.openai().chat.completions.create(
            model="dead-1", messages=[{"role": "user", "content": "anyone?"}]
        )
    assert excinfo.value.status_code == 502
    assert_openai_error_shape(excinfo.value.response.json())
    assert_sidecar_headers(excinfo.value.response.headers)

    with pytest.raises(anthropic.APIStatusError) as aexc:
        await sc.anthropic().messages.create(
            model="deadclaude-1", max_tokens=8, messages=[{"role": "user", "content": "anyone?"}]
        )
    assert aexc.value.status_code == 502
    assert_anthropic_error_shape(aexc.value.response.json())

    with pytest.raises(openai.APIStatusError) as sexc:
        await sc.openai().chat.completions.create(
            model="dead-1", messages=[{"role": "user", "content": "anyone?"}], stream=True
        )
    assert sexc.value.status_code == 502
    await still_serving(sc)


async def test_upstream_html_error_page_becomes_a_provider_shaped_error(
    sidecar: Sidecar, fake: FakeUpstream
) -> None:
    """An HTML 503 from a load balancer in front of the provider keeps its status and
    reaches the SDK as an error it can read, quoting the page."""
    html = b"<html><body>503 Service Temporarily Unavailable</body></html>"
    fake.fail_next(503, html, content_type="text/html")
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{sidecar.openai_base}/chat/completions", json=CHAT) as resp,
    ):
        assert resp.status == 503
        body = await resp.json()
        assert_openai_error_shape(body)
        assert "503 Service Temporarily Unavailable" in body["error"]["message"]
        assert body["error"]["code"] == "upstream_error_page"
        assert_sidecar_headers(resp.headers)
    await still_serving(sidecar)


async def test_body_exactly_at_limit_passes_one_over_fails(
    launch: SidecarLauncher, bundle_dir: Path, fake: FakeUpstream, fake_claude: FakeUpstream
) -> None:
    limit = 3000
    sc = await launch(bundle_dir, extra_args=["--max-body-bytes", str(limit)])
    base = json.dumps(CHAT).encode()
    exact = base[:-1] + b" " * (limit - len(base)) + b"}"
    assert len(exact) == limit
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{sc.openai_base}/chat/completions",
            data=exact,
            headers={"Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 200, await resp.text()
        async with session.post(
            f"{sc.openai_base}/chat/completions",
            data=exact[:-1] + b" }",
            headers={"Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 413, await resp.text()
            assert_openai_error_shape(await resp.json(content_type=None))
    assert len(fake.requests) == 1


async def test_chunked_body_over_limit_413(
    launch: SidecarLauncher, bundle_dir: Path, fake: FakeUpstream, fake_claude: FakeUpstream
) -> None:
    """No Content-Length (chunked upload): the limit must still hold."""
    sc = await launch(bundle_dir, extra_args=["--max-body-bytes", "4096"])

    async def body() -> AsyncIterator[bytes]:
        yield b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"c" * 1000
        yield b'"}]}'

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{sc.openai_base}/chat/completions",
            data=body(),
            headers={"Content-Type": "application/json"},
        ) as resp,
    ):
        assert resp.status == 413, await resp.text()
        assert_openai_error_shape(await resp.json(content_type=None))
    assert fake.requests == []
    await still_serving(sc)


async def test_unknown_path_is_an_error_not_a_crash(sidecar: Sidecar) -> None:
    status, _body, _ = await raw_post(f"{sidecar.url}/v1/definitely/not/an/endpoint", b"{}")
    assert 400 <= status < 500
    await still_serving(sidecar)
