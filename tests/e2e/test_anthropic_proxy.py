"""Anthropic SDK -> sidecar -> fake upstream.

SPEC points: /v1/messages (plain and streamed), /v1/messages/count_tokens, the
sidecar injects ``x-api-key`` for provider anthropic, passes ``anthropic-version``
and never forwards the agent's ``Authorization`` or ``x-api-key``.
"""

from __future__ import annotations

import anthropic

from fakes.upstream import FakeUpstream

from .harness import AGENT_KEY, ANTHROPIC_KEY, Sidecar

VERSION = "2023-06-01"


def assert_clean_anthropic_request(fake: FakeUpstream, path: str) -> None:
    req = fake.last_request
    assert req.path == path, f"upstream saw path {req.path!r}, want {path!r}"
    assert req.header_values("x-api-key") == [ANTHROPIC_KEY]
    assert req.header_values("anthropic-version") == [VERSION]
    assert req.header_values("anthropic-beta") == ["fake-beta-2025-01-01"]
    assert req.header_values("Host") == [f"127.0.0.1:{fake.port}"]
    assert AGENT_KEY not in fake.everything_seen()


def client_for(sidecar: Sidecar) -> anthropic.AsyncAnthropic:
    # The agent sends its own key both ways (SDK bearer + x-api-key header); neither may leak.
    return sidecar.anthropic(
        default_headers={
            "x-api-key": AGENT_KEY,
            "anthropic-version": VERSION,
            "anthropic-beta": "fake-beta-2025-01-01",
        }
    )


async def test_messages_plain(sidecar: Sidecar, fake_claude: FakeUpstream) -> None:
    raw = await client_for(sidecar).messages.with_raw_response.create(
        model="claude-fake-1",
        max_tokens=64,
        system="you are terse",
        messages=[{"role": "user", "content": "hello claude"}],
    )
    msg = await raw.parse()
    assert msg.content[0].type == "text"
    assert msg.content[0].text == "claudefake says: hello claude"
    assert msg.model == "claude-fake-1"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.output_tokens == 4
    assert raw.headers.get("x-sidecar-upstream") == "claude"
    assert raw.headers.get("x-sidecar-bundle-revision") == "r1"
    assert raw.headers.get("x-sidecar-decision-id")
    assert_clean_anthropic_request(fake_claude, "/v1/messages")
    sent = fake_claude.last_request.json()
    assert sent["system"] == "you are terse"
    assert sent["max_tokens"] == 64


async def test_messages_streamed(sidecar: Sidecar, fake_claude: FakeUpstream) -> None:
    async with client_for(sidecar).messages.stream(
        model="claude-fake-1",
        max_tokens=64,
        messages=[{"role": "user", "content": "stream claude"}],
    ) as stream:
        pieces = [piece async for piece in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(pieces) == "claudefake says: stream claude"
    assert len(pieces) == fake_claude.stream_chunks
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 4
    assert fake_claude.streams_completed == 1
    assert_clean_anthropic_request(fake_claude, "/v1/messages")


async def test_count_tokens(sidecar: Sidecar, fake_claude: FakeUpstream) -> None:
    count = await client_for(sidecar).messages.count_tokens(
        model="claude-fake-1",
        messages=[{"role": "user", "content": "one two three four"}],
    )
    assert count.input_tokens == 7  # what the fake computes: 3 per message + 4 words
    assert_clean_anthropic_request(fake_claude, "/v1/messages/count_tokens")


async def test_anthropic_version_passes_through_as_sent(
    sidecar: Sidecar, fake_claude: FakeUpstream
) -> None:
    client = sidecar.anthropic(default_headers={"anthropic-version": "2099-01-01"})
    await client.messages.create(
        model="claude-fake-1", max_tokens=8, messages=[{"role": "user", "content": "v"}]
    )
    assert fake_claude.last_request.header_values("anthropic-version") == ["2099-01-01"]
    assert fake_claude.last_request.header_values("x-api-key") == [ANTHROPIC_KEY]
    assert AGENT_KEY not in fake_claude.everything_seen()


async def test_models_list_anthropic_shape(sidecar: Sidecar, fake_claude: FakeUpstream) -> None:
    raw = await client_for(sidecar).models.with_raw_response.list()
    body = raw.http_response.json()
    assert isinstance(body.get("data"), list)
    assert "has_more" in body
    assert all(m.get("type") == "model" for m in body["data"]), body
    ids = {m["id"] for m in body["data"]}
    assert {"gpt-4o", "gpt-4o-mini", "claude-fake-1"} <= ids
    page = await raw.parse()
    assert "claude-fake-1" in {m.id for m in page.data}
    assert fake_claude.requests_to("/v1/models") == []
