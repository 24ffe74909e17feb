"""Authorization through the real SDKs: RBAC allow and deny, an ABAC forbid, model listing."""

from __future__ import annotations

import hashlib
from typing import Any

import anthropic
import openai
import pytest

from fakes.upstream import FakeUpstream
from integration.conftest import MakeSidecar, Running, openai_bundle

KEYS = {"analyst-bot": "sk-analyst", "intern-bot": "sk-intern", "support-bot": "sk-support"}


def rbac_bundle(fake: FakeUpstream) -> dict[str, Any]:
    doc = openai_bundle(fake)
    doc["upstreams"]["fake"]["models"] = ["gpt-4o", "gpt-4o-mini", "gpt-3.5-turbo"]
    doc["identity"] = {
        "api_keys": [
            {
                "principal": name,
                "tenant": "acme",
                "roles": roles,
                "sha256": [hashlib.sha256(KEYS[name].encode()).hexdigest()],
            }
            for name, roles in [
                ("analyst-bot", ["analyst"]),
                ("intern-bot", ["analyst", "intern"]),
                ("support-bot", ["support"]),
            ]
        ]
    }
    doc["roles"] = {
        "analyst": [{"actions": ["llm.chat", "llm.responses"], "models": ["gpt-4o*", "claude-*"]}],
        "support": [{"actions": ["llm.chat"], "models": ["mock-*"]}],
    }
    doc["policies"] = ["policies/*.cedar"]
    return doc


NO_STREAM = """
@id("interns-may-not-stream")
forbid (principal in Sidecar::Role::"intern", action, resource)
when { context.stream };
"""


async def start(fake: FakeUpstream, make_sidecar: MakeSidecar) -> Running:
    sc = await make_sidecar(None)
    (sc.bundle_dir / "policies").mkdir()
    (sc.bundle_dir / "policies" / "stream.cedar").write_text(NO_STREAM)
    sc.write_bundle(rbac_bundle(fake))
    assert await sc.sidecar.reload() == "success"
    return sc


def client(sc: Running, who: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key=KEYS[who], max_retries=0)


async def test_rbac_allows_listed_models_and_denies_the_rest(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await start(fake, make_sidecar)
    reply = await client(sc, "analyst-bot").chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "allowed"}]
    )
    assert reply.choices[0].message.content == fake.reply_for("allowed")
    with pytest.raises(openai.PermissionDeniedError) as info:
        await client(sc, "analyst-bot").chat.completions.create(
            model="gpt-3.5-turbo", messages=[{"role": "user", "content": "not allowed"}]
        )
    message = info.value.message
    assert "no policy permits llm.chat on model 'gpt-3.5-turbo'" in message
    assert "principal 'analyst-bot'" in message and "denies by default" in message
    assert info.value.body is not None and info.value.code == "policy_denied"
    with pytest.raises(openai.PermissionDeniedError):
        await client(sc, "support-bot").chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.PermissionDeniedError):  # analysts may chat, not embed
        await client(sc, "analyst-bot").embeddings.create(model="gpt-4o", input="x")
    assert [r.json()["messages"][0]["content"] for r in fake.requests] == ["allowed"]


async def test_abac_forbid_on_streaming_for_a_role(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await start(fake, make_sidecar)
    intern = client(sc, "intern-bot")
    reply = await intern.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "plain is fine"}]
    )
    assert reply.choices[0].message.content
    with pytest.raises(openai.PermissionDeniedError) as info:
        await intern.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "stream"}], stream=True
        )
    assert "denied by policy 'interns-may-not-stream'" in info.value.message
    # the same role without the intern role streams
    stream = await client(sc, "analyst-bot").chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "stream"}], stream=True
    )
    assert [c async for c in stream]
    span = sc.finished("chat gpt-4o")
    assert any(dict(s.attributes or {}).get("sidecar.decision") == "deny" for s in span)
    aclient = anthropic.AsyncAnthropic(base_url=sc.base, api_key=KEYS["intern-bot"], max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as ainfo:
        async with aclient.messages.stream(
            model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        ) as s:
            await s.get_final_message()
    assert "interns-may-not-stream" in str(ainfo.value)


async def test_models_list_shows_only_what_the_caller_may_use(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await start(fake, make_sidecar)
    analyst = [m.id async for m in client(sc, "analyst-bot").models.list()]
    support = [m.id async for m in client(sc, "support-bot").models.list()]
    assert analyst == ["gpt-4o", "gpt-4o-mini"]
    assert support == ["mock-echo"]
    with pytest.raises(openai.NotFoundError):
        await client(sc, "support-bot").models.retrieve("gpt-4o")
