"""The default bundle's guards on what agents really send and receive.

Secrets are found in the forms configs, env dumps, command lines and error
messages carry them, and never reach the provider or the decision log; tool
calls keep arguments the tool can parse.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from fakes.upstream import FakeUpstream
from integration.conftest import MakeSidecar, Running, openai_bundle

DEFAULT_BUNDLE = Path(__file__).resolve().parents[2] / "policy_bundles" / "default" / "bundle.yaml"
_RNG = random.Random(11)
SECRET = "".join(_RNG.choice(string.ascii_letters + string.digits) for _ in range(24))


def default_guards() -> dict[str, Any]:
    guards: dict[str, Any] = yaml.safe_load(DEFAULT_BUNDLE.read_text())["guards"]
    return guards


def with_default_guards(fake: FakeUpstream) -> dict[str, Any]:
    doc = openai_bundle(fake)
    doc["guards"] = default_guards()
    return doc


def oai(sc: Running) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sc.base + "/v1", api_key="sk-agent", max_retries=0)


@pytest.mark.parametrize(
    "template",
    [
        "config: password={v}",
        "env: SECRET_KEY={v}",
        "Error: password={v} rejected",
        '{{"password": "{v}"}}',
        "deploy with --api-key {v} please",
        "HOME=/root\nDB_PASSWORD={v}\nTERM=xterm",
    ],
)
async def test_a_keyword_assigned_secret_is_blocked_wherever_it_sits(
    make_sidecar: MakeSidecar, fake: FakeUpstream, tmp_path: Path, template: str
) -> None:
    log = tmp_path / "decisions.jsonl"
    sc = await make_sidecar(
        with_default_guards(fake), decision_log=str(log), decision_log_content=True
    )
    prompt = template.format(v=SECRET)
    async with oai(sc) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": prompt}]
            )
    assert "secrets-in-prompt" in caught.value.message and "GENERIC_SECRET" in caught.value.message
    assert SECRET not in caught.value.message
    assert fake.requests == []
    await sc.sidecar.stop()  # flushes the decision log
    text = log.read_text()
    assert SECRET not in text
    entry = json.loads(text)
    assert entry["guards"][0]["action"] == "block"
    assert entry["content"] == [
        {"channel": "user", "text": prompt.replace(SECRET, "[GENERIC_SECRET]")}
    ]
