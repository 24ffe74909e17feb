"""OpenAI SDK -> sidecar -> fake upstream: every endpoint, and what the upstream saw.

SPEC points: proxy endpoints, key injection (the agent's key never leaves the
pod), static headers, traceparent continuation, hop-by-hop header removal,
x-sidecar-* response headers, GET /v1/models answered from the bundle.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import openai
import pytest

from fakes.upstream import FakeUpstream

from .harness import (
    AGENT_KEY,
    OPENAI_KEY,
    Sidecar,
    SidecarLauncher,
    standard_bundle,
    write_bundle,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
AGENT_TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
TRACEPARENT_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def assert_clean_upstream_request(fake: FakeUpstream, path: str) -> None:
    """The last upstream request went to ``path`` with exactly the injected credentials."""
    req = fake.last_request
    assert req.path == path, f"upstream saw path {req.path!r}, want {path!r}"
    assert req.header_values("Authorization") == [f"Bearer {OPENAI_KEY}"]
    assert req.header_values("X-Static") == ["yes"]
    assert "x-api-key" not in req.headers
    # A proxy addresses the upstream: Host must name it, not the sidecar.
    assert req.header_values("Host") == [f"127.0.0.1:{fake.port}"]
    assert AGENT_KEY not in fake.everything_seen()


async def test_chat_plain(sidecar: Sidecar, fake: FakeUpstream) -> None:
    client = sidecar.openai(default_headers={"traceparent": AGENT_TRACEPARENT})
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello plain"},
    ]
    raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages)
    completion = raw.parse()
    assert completion.choices[0].message.content == "fake says: hello plain"
    assert completion.model == "gpt-4o"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 4  # "fake says: hello plain"
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert raw.headers.get("x-sidecar-upstream") == "fake"
    assert raw.headers.get("x-sidecar-bundle-revision") == "r1"
    assert raw.headers.get("x-sidecar-decision-id")

    assert_clean_upstream_request(fake, "/v1/chat/completions")
    sent = fake.last_request.json()
    assert sent["model"] == "gpt-4o"
    assert sent["messages"] == messages

    traceparent = fake.last_request.headers.get("traceparent", "")
    match = TRACEPARENT_RE.match(traceparent)
    assert match, f"upstream traceparent {traceparent!r} is not W3C"
    assert match.group(1) == TRACE_ID, "the sidecar did not continue the agent's trace"


async def test_traceparent_created_when_agent_sends_none(
    sidecar: Sidecar, fake: FakeUpstream
) -> None:
    client = sidecar.openai()
    for text in ("one", "two"):
        await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": text}]
        )
    trace_ids = []
    for req in fake.requests:
        match = TRACEPARENT_RE.match(req.headers.get("traceparent", ""))
        assert match, f"no W3C traceparent upstream: {req.headers.get('traceparent')!r}"
        assert match.group(1) != "0" * 32
        trace_ids.append(match.group(1))
    assert trace_ids[0] != trace_ids[1], "two independent calls share one trace id"


async def test_chat_streamed(sidecar: Sidecar, fake: FakeUpstream) -> None:
    client = sidecar.openai()
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "stream this please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert raw.headers.get("x-sidecar-upstream") == "fake"
    assert raw.headers.get("x-sidecar-bundle-revision") == "r1"
    assert raw.headers.get("x-sidecar-decision-id")
    assert raw.headers.get("content-type", "").startswith("text/event-stream")
    stream = raw.parse()
    text = ""
    content_chunks = 0
    usage_total = None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
            content_chunks += 1
        if chunk.usage is not None:
            usage_total = chunk.usage.total_tokens
    assert text == "fake says: stream this please"
    assert content_chunks == fake.stream_chunks
    assert usage_total is not None and usage_total > 0
    assert fake.streams_completed == 1
    assert_clean_upstream_request(fake, "/v1/chat/completions")
    assert fake.last_request.json()["stream"] is True


async def test_embeddings_bytes_pass_unchanged(sidecar: Sidecar, fake: FakeUpstream) -> None:
    via_sidecar = await sidecar.openai().embeddings.create(
        model="text-embedding-3-small", input=["alpha beta", "gamma"]
    )
    assert_clean_upstream_request(fake, "/v1/embeddings")
    direct = await openai.AsyncOpenAI(
        base_url=f"{fake.url}/v1", api_key="direct", max_retries=0
    ).embeddings.create(model="text-embedding-3-small", input=["alpha beta", "gamma"])
    assert [d.embedding for d in via_sidecar.data] == [d.embedding for d in direct.data]
    assert len(via_sidecar.data) == 2
    assert via_sidecar.usage.prompt_tokens == 3


async def test_completions(sidecar: Sidecar, fake: FakeUpstream) -> None:
    comp = await sidecar.openai().completions.create(
        model="gpt-3.5-turbo-instruct", prompt="complete me"
    )
    assert comp.choices[0].text == "fake says: complete me"
    assert comp.usage is not None and comp.usage.total_tokens > 0
    assert_clean_upstream_request(fake, "/v1/completions")


async def test_responses_plain_and_streamed(sidecar: Sidecar, fake: FakeUpstream) -> None:
    client = sidecar.openai()
    resp = await client.responses.create(model="gpt-4o", input="respond plainly")
    assert resp.output_text == "fake says: respond plainly"
    assert resp.usage is not None and resp.usage.output_tokens == 4
    assert_clean_upstream_request(fake, "/v1/responses")

    types: list[str] = []
    deltas = ""
    final_text = None
    stream = await client.responses.create(model="gpt-4o", input="respond streamed", stream=True)
    async for event in stream:
        types.append(event.type)
        if event.type == "response.output_text.delta":
            deltas += event.delta
        elif event.type == "response.completed":
            final_text = event.response.output_text
            assert event.response.usage is not None
    assert deltas == "fake says: respond streamed"
    assert final_text == "fake says: respond streamed"
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    assert types.count("response.output_text.delta") == fake.stream_chunks
    assert_clean_upstream_request(fake, "/v1/responses")


async def test_models_list_from_bundle(sidecar: Sidecar, fake: FakeUpstream) -> None:
    raw = await sidecar.openai().models.with_raw_response.list()
    ids = {m.id for m in raw.parse().data}
    assert {"gpt-4o", "gpt-4o-mini", "claude-fake-1"} <= ids
    assert not ids & set(fake.models), "models were proxied instead of read from the bundle"
    assert fake.requests_to("/v1/models") == []
    assert raw.headers.get("x-sidecar-bundle-revision") == "r1"
    assert raw.headers.get("x-sidecar-decision-id")
    body = raw.http_response.json()
    assert body["object"] == "list"
    assert all(m["object"] == "model" for m in body["data"])


async def test_decision_ids_unique_and_revision(sidecar: Sidecar, fake: FakeUpstream) -> None:
    client = sidecar.openai()
    ids = []
    for text in ("first", "second", "third"):
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": text}]
        )
        assert raw.headers.get("x-sidecar-bundle-revision") == "r1"
        ids.append(raw.headers.get("x-sidecar-decision-id", ""))
    assert all(ids), ids
    assert len(set(ids)) == 3, f"decision ids repeat: {ids}"


async def test_hop_by_hop_and_unlisted_headers_dropped_allowed_ones_pass(
    sidecar: Sidecar, fake: FakeUpstream
) -> None:
    body = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "hdrs"}]}'
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {AGENT_KEY}",
        "x-api-key": AGENT_KEY,
        "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0",
        "Keep-Alive": "timeout=77",
        "TE": "trailers",
        "X-Agent-Custom": "not-listed",
        "OpenAI-Organization": "org-test",
        "OpenAI-Beta": "assistants=v2",
        "X-Stainless-Lang": "python",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{sidecar.openai_base}/chat/completions", data=body, headers=headers) as r,
    ):
        assert r.status == 200, await r.text()
        reply = await r.json()
    assert reply["choices"][0]["message"]["content"] == "fake says: hdrs"
    seen = fake.last_request.headers
    assert "Proxy-Authorization" not in seen
    assert seen.get("Keep-Alive") != "timeout=77"
    assert "TE" not in seen
    # Only the allow-list travels: an unknown header, or one that picks an account of
    # the operator's key, is dropped unless the upstream lists it.
    assert "X-Agent-Custom" not in seen
    assert "OpenAI-Organization" not in seen
    assert seen.get("OpenAI-Beta") == "assistants=v2"
    assert seen.get("X-Stainless-Lang") == "python"
    assert_clean_upstream_request(fake, "/v1/chat/completions")


async def test_route_matching_first_match_path_and_v1_base(
    tmp_path: Path,
    launch: SidecarLauncher,
    fake: FakeUpstream,
    fake2: FakeUpstream,
    fake_claude: FakeUpstream,
) -> None:
    """First match wins; a ``path`` glob restricts a route; base_url ending in /v1 works."""
    bundle = standard_bundle(fake.url, fake_claude.url)
    bundle["upstreams"]["fake2"] = {
        "provider": "openai",
        "base_url": f"{fake2.url}/v1",
        "api_key": {"env": "FAKE_KEY"},
    }
    bundle["routes"] = [
        {"match": {"path": "/v1/chat/completions", "model": "gpt-4o-mini"}, "upstream": "fake2"},
        {"match": {"path": "/v1/embeddings", "model": "special-*"}, "upstream": "fake2"},
        *bundle["routes"],
    ]
    sc = await launch(write_bundle(tmp_path / "b", bundle))
    client = sc.openai()

    mini = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "to two"}]
    )
    assert mini.choices[0].message.content == "fake2 says: to two"
    assert fake2.last_request.path == "/v1/chat/completions", "base_url /v1 was repeated"
    assert fake2.last_request.header_values("Authorization") == [f"Bearer {OPENAI_KEY}"]

    full = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "to one"}]
    )
    assert full.choices[0].message.content == "fake says: to one"

    emb = await client.embeddings.create(model="special-embed", input="x")
    assert len(emb.data) == 1
    assert fake2.last_request.path == "/v1/embeddings"

    with pytest.raises(openai.NotFoundError) as excinfo:
        await client.chat.completions.create(
            model="special-embed", messages=[{"role": "user", "content": "wrong path"}]
        )
    assert "special-embed" in excinfo.value.message
    assert AGENT_KEY not in fake2.everything_seen()


async def test_api_key_from_file(
    tmp_path: Path, launch: SidecarLauncher, fake: FakeUpstream, fake_claude: FakeUpstream
) -> None:
    key_file = tmp_path / "secrets" / "openai-key"
    key_file.parent.mkdir()
    key_file.write_text("key-from-file-789\n")
    bundle = standard_bundle(fake.url, fake_claude.url)
    bundle["upstreams"]["fake"]["api_key"] = {"file": str(key_file)}
    sc = await launch(write_bundle(tmp_path / "b", bundle))
    await sc.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "k"}]
    )
    assert fake.last_request.header_values("Authorization") == ["Bearer key-from-file-789"]
    assert AGENT_KEY not in fake.everything_seen()


async def test_no_api_key_configured_still_strips_agent_key(
    tmp_path: Path, launch: SidecarLauncher, fake: FakeUpstream, fake_claude: FakeUpstream
) -> None:
    """``api_key`` is optional; without one the agent's key must still never be forwarded."""
    bundle = standard_bundle(fake.url, fake_claude.url)
    del bundle["upstreams"]["fake"]["api_key"]
    del bundle["upstreams"]["claude"]["api_key"]
    sc = await launch(write_bundle(tmp_path / "b", bundle))
    reply = await sc.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "keyless"}]
    )
    assert reply.choices[0].message.content == "fake says: keyless"
    msg = await sc.anthropic().messages.create(
        model="claude-fake-1", max_tokens=8, messages=[{"role": "user", "content": "keyless"}]
    )
    assert msg.content[0].type == "text"
    assert AGENT_KEY not in fake.everything_seen()
    assert AGENT_KEY not in fake_claude.everything_seen()
    assert fake.last_request.header_values("Authorization") == []
    assert fake_claude.last_request.header_values("x-api-key") == []


async def test_agent_credentials_stripped_in_any_case(
    sidecar: Sidecar, fake: FakeUpstream, fake_claude: FakeUpstream
) -> None:
    """Header names are case-insensitive: AUTHORIZATION / X-API-KEY must be stripped too."""
    headers = {
        "Content-Type": "application/json",
        "AUTHORIZATION": f"Bearer {AGENT_KEY}",
        "X-API-KEY": AGENT_KEY,
        "anthropic-version": "2023-06-01",
    }
    chat = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "case"}]}'
    msgs = (
        b'{"model": "claude-fake-1", "max_tokens": 8,'
        b' "messages": [{"role": "user", "content": "case"}]}'
    )
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{sidecar.openai_base}/chat/completions", data=chat, headers=headers
        ) as r:
            assert r.status == 200, await r.text()
        async with session.post(f"{sidecar.url}/v1/messages", data=msgs, headers=headers) as r:
            assert r.status == 200, await r.text()
    assert AGENT_KEY not in fake.everything_seen()
    assert AGENT_KEY not in fake_claude.everything_seen()
    assert fake.last_request.header_values("Authorization") == [f"Bearer {OPENAI_KEY}"]


async def test_connection_nominated_headers_are_hop_by_hop(
    sidecar: Sidecar, fake: FakeUpstream
) -> None:
    """RFC 9110 7.6.1: headers named in ``Connection`` are hop-by-hop and not forwarded."""
    body = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "conn"}]}'
    headers = {
        "Content-Type": "application/json",
        "Connection": "keep-alive, X-Hop-Only",
        "X-Hop-Only": "for-the-sidecar-only",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{sidecar.openai_base}/chat/completions", data=body, headers=headers) as r,
    ):
        assert r.status == 200, await r.text()
    assert "X-Hop-Only" not in fake.last_request.headers


async def test_glob_is_a_full_match(sidecar: Sidecar, fake: FakeUpstream) -> None:
    """``gpt-*`` must not route ``my-gpt-4o`` (a search instead of a full match would)."""
    with pytest.raises(openai.NotFoundError) as excinfo:
        await sidecar.openai().chat.completions.create(
            model="my-gpt-4o", messages=[{"role": "user", "content": "glob"}]
        )
    assert "my-gpt-4o" in excinfo.value.message
    assert fake.requests == []


async def test_completions_streamed(sidecar: Sidecar, fake: FakeUpstream) -> None:
    stream = await sidecar.openai().completions.create(
        model="gpt-3.5-turbo-instruct", prompt="stream legacy", stream=True
    )
    text = ""
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].text
    assert text == "fake says: stream legacy"
    assert fake.streams_completed == 1


async def test_compressed_upstream_reply(sidecar: Sidecar, fake: FakeUpstream) -> None:
    """Real providers gzip JSON replies; the agent must still get a body it can decode."""
    fake.compress = True
    reply = await sidecar.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "gzip me"}]
    )
    assert reply.choices[0].message.content == "fake says: gzip me"
    emb = await sidecar.openai().embeddings.create(model="text-embedding-3-small", input="z")
    assert len(emb.data[0].embedding) == 8


async def test_traceparent_on_anthropic_route(sidecar: Sidecar, fake_claude: FakeUpstream) -> None:
    client = sidecar.anthropic(
        default_headers={"x-api-key": AGENT_KEY, "traceparent": AGENT_TRACEPARENT}
    )
    await client.messages.create(
        model="claude-fake-1", max_tokens=8, messages=[{"role": "user", "content": "tp"}]
    )
    match = TRACEPARENT_RE.match(fake_claude.last_request.headers.get("traceparent", ""))
    assert match and match.group(1) == TRACE_ID


async def test_invalid_agent_traceparent_is_replaced(sidecar: Sidecar, fake: FakeUpstream) -> None:
    client = sidecar.openai(default_headers={"traceparent": "not-a-traceparent"})
    await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "bad tp"}]
    )
    sent = fake.last_request.header_values("traceparent")
    assert len(sent) == 1 and TRACEPARENT_RE.match(sent[0]), sent


async def test_concurrent_calls_do_not_cross(sidecar: Sidecar, fake: FakeUpstream) -> None:
    client = sidecar.openai()

    async def one(i: int) -> tuple[str, str, str]:
        if i % 2:
            stream = await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": f"n{i}"}], stream=True
            )
            text = ""
            async for chunk in stream:
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
            return f"n{i}", text, ""
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": f"n{i}"}]
        )
        content = raw.parse().choices[0].message.content or ""
        return f"n{i}", content, raw.headers.get("x-sidecar-decision-id", "")

    fake.chunk_delay = 0.01
    results = await asyncio.gather(*(one(i) for i in range(16)))
    for asked, got, _ in results:
        assert got == f"fake says: {asked}"
    ids = [d for _, _, d in results if d]
    assert len(ids) == 8 and len(set(ids)) == 8, ids


async def test_base_url_path_is_kept(
    tmp_path: Path, launch: SidecarLauncher, fake: FakeUpstream, fake_claude: FakeUpstream
) -> None:
    """A gateway base_url with its own path: the request path is appended to it, and a
    base_url ending in /v1 does not repeat /v1.  ``provider`` defaults to openai."""
    async with FakeUpstream(name="gw", path_prefix="/openai") as gateway:
        bundle = standard_bundle(fake.url, fake_claude.url)
        bundle["upstreams"]["gw_v1"] = {
            "base_url": f"{gateway.url}/openai/v1",
            "api_key": {"env": "FAKE_KEY"},
        }
        bundle["upstreams"]["gw_root"] = {
            "base_url": f"{gateway.url}/openai",
            "api_key": {"env": "FAKE_KEY"},
        }
        bundle["routes"] = [
            {"match": {"model": "gw1-*"}, "upstream": "gw_v1"},
            {"match": {"model": "gw2-*"}, "upstream": "gw_root"},
            *bundle["routes"],
        ]
        sc = await launch(write_bundle(tmp_path / "b", bundle))
        for model in ("gw1-model", "gw2-model"):
            reply = await sc.openai().chat.completions.create(
                model=model, messages=[{"role": "user", "content": model}]
            )
            assert reply.choices[0].message.content == f"gw says: {model}"
            assert gateway.last_request.path == "/openai/v1/chat/completions"
            assert gateway.last_request.header_values("Authorization") == [f"Bearer {OPENAI_KEY}"]
        assert AGENT_KEY not in gateway.everything_seen()
