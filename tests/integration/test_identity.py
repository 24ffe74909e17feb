"""Identity through the real SDKs: virtual keys, rotation, refusals, trusted headers."""

from __future__ import annotations

import hashlib

import aiohttp
import anthropic
import openai
import pytest

from fakes.upstream import FakeUpstream
from integration.conftest import MakeSidecar, openai_bundle

AGENT_KEY = "sk-agent-virtual-key-1"
ROTATED_KEY = "sk-agent-virtual-key-2"


def keyed_bundle(fake: FakeUpstream) -> dict[str, object]:
    doc = openai_bundle(fake)
    doc["identity"] = {
        "api_keys": [
            {
                "principal": "research-bot",
                "tenant": "acme",
                "roles": ["analyst"],
                "sha256": [
                    hashlib.sha256(AGENT_KEY.encode()).hexdigest(),
                    hashlib.sha256(ROTATED_KEY.encode()).hexdigest(),
                ],
            }
        ]
    }
    return doc


async def test_virtual_keys_admit_and_are_never_forwarded(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(keyed_bundle(fake))
    for key in (AGENT_KEY, ROTATED_KEY):
        client = openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key=key)
        reply = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "who am I"}]
        )
        assert reply.choices[0].message.content == fake.reply_for("who am I")
    aclient = anthropic.AsyncAnthropic(base_url=sc.base, api_key=AGENT_KEY)
    message = await aclient.messages.create(
        model="claude-x", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].type == "text"
    seen = fake.everything_seen()
    assert AGENT_KEY not in seen and ROTATED_KEY not in seen
    assert fake.requests[0].headers["authorization"] == "Bearer sk-injected-upstream-key"
    span = await sc.wait_for_span("chat gpt-4o")
    attrs = dict(span.attributes or {})
    assert (attrs["sidecar.tenant.id"], attrs["sidecar.principal.id"]) == ("acme", "research-bot")


async def test_unknown_or_missing_key_is_refused_in_each_shape(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(keyed_bundle(fake))
    client = openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key="sk-not-a-known-key")
    with pytest.raises(openai.AuthenticationError) as info:
        await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    assert "not known to this sidecar" in info.value.message
    with pytest.raises(openai.AuthenticationError):
        await client.models.list()
    aclient = anthropic.AsyncAnthropic(base_url=sc.base, api_key="sk-not-a-known-key")
    with pytest.raises(anthropic.AuthenticationError) as ainfo:
        await aclient.messages.create(
            model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert "not known to this sidecar" in str(ainfo.value)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{sc.base}/v1/chat/completions",
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]},
        ) as resp,
    ):
        assert resp.status == 401
        body = await resp.json()
        assert body["error"]["code"] == "missing_api_key"
        assert resp.headers["x-sidecar-decision-id"]
    assert fake.requests == []  # nothing reached the provider
    ok = openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key=AGENT_KEY)
    assert [m.id async for m in ok.models.list()] == ["mock-echo"]


async def test_trusted_headers_only_when_the_bundle_enables_them(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    headers = {"x-sidecar-tenant": "globex", "x-sidecar-user": "jane"}
    plain = await make_sidecar(openai_bundle(fake))
    client = openai.AsyncOpenAI(base_url=f"{plain.base}/v1", api_key="x", default_headers=headers)
    await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "a"}]
    )
    span = await plain.wait_for_span("chat gpt-4o")
    assert dict(span.attributes or {})["sidecar.tenant.id"] == "default"  # the pod's tenant

    doc = openai_bundle(fake)
    doc["identity"] = {"trusted_headers": True}
    trusting = await make_sidecar(doc)
    client = openai.AsyncOpenAI(
        base_url=f"{trusting.base}/v1", api_key="x", default_headers=headers
    )
    await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "b"}]
    )
    span = await trusting.wait_for_span("chat gpt-4o")
    assert dict(span.attributes or {})["sidecar.tenant.id"] == "globex"
    # identity headers are for the sidecar, never for the provider
    assert all("x-sidecar-tenant" not in r.headers for r in fake.requests)
