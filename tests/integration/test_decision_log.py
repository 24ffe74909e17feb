"""The decision log: one JSON line per call, secrets masked, content only on request."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

import openai
import pytest

from fakes.upstream import FakeUpstream
from integration.conftest import MakeSidecar, openai_bundle
from sidecar.telemetry.decision_log import mask

KEY = "sk-virtual-key-never-logged"


def keyed(fake: FakeUpstream) -> dict[str, Any]:
    doc = openai_bundle(fake)
    doc["identity"] = {
        "api_keys": [
            {
                "principal": "bot",
                "tenant": "acme",
                "user": "jane",
                "roles": ["analyst"],
                "sha256": [hashlib.sha256(KEY.encode()).hexdigest()],
            }
        ]
    }
    doc["roles"] = {"analyst": [{"actions": ["llm.chat"], "models": ["gpt-4o*"]}]}
    return doc


async def test_one_line_per_decision_with_the_facts_an_auditor_needs(
    fake: FakeUpstream, make_sidecar: MakeSidecar, tmp_path: Path
) -> None:
    log = tmp_path / "decisions.jsonl"
    sc = await make_sidecar(keyed(fake), decision_log=str(log))
    client = openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key=KEY, max_retries=0)
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "a private question"}]
    )
    with pytest.raises(openai.PermissionDeniedError):
        await client.chat.completions.create(
            model="gpt-3.5-turbo", messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.AuthenticationError):
        await openai.AsyncOpenAI(
            base_url=f"{sc.base}/v1", api_key="sk-wrong", max_retries=0
        ).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    await sc.sidecar.stop()  # flushes the writer

    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["result"] for e in lines] == ["allow", "deny", "unauthenticated"]
    allow, deny, unauth = lines
    assert allow["decision_id"] == raw.headers["x-sidecar-decision-id"]
    assert (allow["principal"], allow["tenant"], allow["user"], allow["roles"]) == (
        "bot",
        "acme",
        "jane",
        ["analyst"],
    )
    assert allow["action"] == "llm.chat" and allow["resource"] == {"type": "Model", "id": "gpt-4o"}
    assert allow["policies"] == ["role:analyst[0]"] and allow["bundle_revision"] == "r1"
    assert allow["status"] == 200 and allow["upstream"] == "fake"
    assert len(allow["trace_id"]) == 32 and len(allow["span_id"]) == 16
    assert allow["usage"]["output_tokens"] > 0 and allow["duration_ms"] > 0
    assert deny["status"] == 403 and deny["policies"] == [] and deny["upstream"] is None
    assert unauth["status"] == 401 and unauth["principal"] is None
    text = log.read_text()
    assert KEY not in text and "sk-wrong" not in text
    assert "a private question" not in text and "content" not in allow


async def test_content_is_logged_only_when_the_operator_opts_in(
    fake: FakeUpstream, make_sidecar: MakeSidecar, tmp_path: Path
) -> None:
    log = tmp_path / "decisions.jsonl"
    sc = await make_sidecar(openai_bundle(fake), decision_log=str(log), decision_log_content=True)
    client = openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key="x")
    await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "log this text"}]
    )
    await sc.sidecar.stop()
    entry = json.loads(log.read_text())
    assert entry["content"] == [{"channel": "user", "text": "log this text"}]


def test_mask_covers_credential_like_names_at_any_depth() -> None:
    masked = mask(
        {
            "api_key": "k",
            "x": {"Authorization": "Bearer t", "list": [{"client_secret": "s"}]},
            "token_estimate": 12,
            "access_token": "a",
            "password": "p",
        }
    )
    assert masked == {
        "api_key": "***",
        "x": {"Authorization": "***", "list": [{"client_secret": "***"}]},
        "token_estimate": 12,
        "access_token": "***",
        "password": "***",
    }


async def test_no_key_token_or_authorization_value_reaches_the_log(
    fake: FakeUpstream, make_sidecar: MakeSidecar, tmp_path: Path
) -> None:
    from integration.test_jwt_identity import RSA_KEY, jwk_of, jwt_bundle, token

    log = tmp_path / "decisions.jsonl"
    sc = await make_sidecar(None, decision_log=str(log))
    (sc.bundle_dir / "jwks.json").write_text(json.dumps({"keys": [jwk_of(RSA_KEY, "rsa-1")]}))
    doc = jwt_bundle(fake, jwks_file="jwks.json")
    doc["identity"]["api_keys"] = keyed(fake)["identity"]["api_keys"]
    sc.write_bundle(doc)
    assert await sc.sidecar.reload() == "success"
    good, expired = token(), token(exp=1)
    bearers = [good, expired, KEY, "sk-wrong-key"]
    for bearer in bearers:
        client = openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key=bearer, max_retries=0)
        with contextlib.suppress(openai.APIStatusError):
            await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "x"}]
            )
    await sc.sidecar.stop()
    text = log.read_text()
    assert len(text.splitlines()) == len(bearers)
    for secret in bearers:
        assert secret not in text
    for part in good.split("."):  # not even a piece of the JWT
        assert part not in text
    assert "bearer" not in text.lower() and "authorization" not in text.lower()
    results = [json.loads(line)["result"] for line in text.splitlines()]
    assert results == ["allow", "unauthenticated", "allow", "unauthenticated"]


def test_fields_outside_the_known_schema_are_masked_by_name(tmp_path: Path) -> None:
    from sidecar.telemetry.decision_log import DecisionLog

    path = tmp_path / "log.jsonl"
    log = DecisionLog(str(path))
    log.record({"decision_id": "a", "result": "allow"})  # known fields: written as is
    log.record({"decision_id": "b", "upstream_token": "t0ps3cret", "extra": {"password": "p"}})
    log.close()
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert first == {"decision_id": "a", "result": "allow"}
    assert second == {"decision_id": "b", "upstream_token": "***", "extra": {"password": "***"}}


async def test_a_model_listing_has_its_span_and_its_decision_log_lines(
    fake: FakeUpstream, make_sidecar: MakeSidecar, tmp_path: Path
) -> None:
    log = tmp_path / "decisions.jsonl"
    doc = keyed(fake)
    doc["upstreams"]["fake"]["models"] = ["gpt-4o", "gpt-3.5-turbo"]
    sc = await make_sidecar(doc, decision_log=str(log))
    client = openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key=KEY, max_retries=0)
    listed = await client.models.with_raw_response.list()
    assert [m.id for m in listed.parse().data] == ["gpt-4o"]  # only what the caller may use
    assert (await client.models.retrieve("gpt-4o")).id == "gpt-4o"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("gpt-3.5-turbo")  # forbidden looks like unknown
    with pytest.raises(openai.AuthenticationError):
        await openai.AsyncOpenAI(
            base_url=f"{sc.base}/v1", api_key="sk-wrong", max_retries=0
        ).models.list()
    await sc.wait_for_span("llm.models")
    await sc.sidecar.stop()  # flushes the writer
    span = sc.finished("llm.models")[0]

    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["action"], e["result"], e["status"]) for e in lines] == [
        ("llm.models", "allow", 200),
        ("llm.models", "allow", 200),
        ("llm.models", "deny", 404),
        ("llm.models", "unauthenticated", 401),
    ]
    first = lines[0]
    assert first["decision_id"] == listed.headers["x-sidecar-decision-id"]
    assert first["principal"] == "bot" and first["resource"] == {"type": "Model", "id": None}
    assert lines[1]["resource"] == {"type": "Model", "id": "gpt-4o"}
    assert lines[2]["resource"] == {"type": "Model", "id": "gpt-3.5-turbo"}
    assert span.attributes is not None
    assert span.attributes["sidecar.action"] == "llm.models"
    assert span.attributes["sidecar.tenant.id"] == "acme"
    assert {s.name for s in sc.finished()} >= {"llm.models", "identity.resolve"}
