"""OpenAI SDK -> sidecar -> fake upstream: every endpoint, and what the upstream saw.

SPEC points: proxy endpoints, key injection (the agent's key never leaves the
pod), static headers, traceparent continuation, hop-by-hop header removal,
x-sidecar-* response headers, GET /v1/models answered from the bundle.
"""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import openai
import pytest

from fakes.upstream import FakeUpstream

from .conftest import (
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
    assert AGENT_KEY not in fake.everything_seen()


async def test_chat_plain(sidecar: Sidecar, fake: FakeUpstream) -> None:
    client = sidecar.openai(default_headers={"traceparent": AGENT_TRACEPARENT})
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello plain"},
    ]
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=messages
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "fake says: hello plain"
    assert completion.model == "gpt-4o"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3
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


async def test_hop_by_hop_dropped_other_headers_pass(sidecar: Sidecar, fake: FakeUpstream) -> None:
    body = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "hdrs"}]}'
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {AGENT_KEY}",
        "x-api-key": AGENT_KEY,
        "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0",
        "Keep-Alive": "timeout=77",
        "TE": "trailers",
        "X-Agent-Custom": "keep-me",
        "OpenAI-Organization": "org-test",
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
    assert seen.get("X-Agent-Custom") == "keep-me"
    assert seen.get("OpenAI-Organization") == "org-test"
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
