"""Model and tool names are matched without regard to case, the same way everywhere.

The sidecar forwards a model or tool name as the agent spelled it, and upstreams
disagree on case, so a rule written `gpt-4o*` must hold for `GPT-4o` too — in
routes, roles, Cedar policies, tool governance and limits alike — and a Cedar
literal that could never match a folded name is a bundle error, not a silent
no-op.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from fakes.upstream import FakeUpstream

from .harness import SidecarLauncher, run_cli, standard_bundle, write_bundle

FORBID_GPT4O = """
@id("no-gpt-4o")
forbid (principal, action, resource is Sidecar::Model)
when { resource.name like "gpt-4o*" };

@id("no-shell")
forbid (principal, action == Sidecar::Action::"tool.call", resource)
when { resource.name == "shell" };
"""

TOOLS: Any = [
    {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "Shell", "parameters": {"type": "object"}}},
]


def with_policy(bundle: dict[str, Any], directory: Path, cedar: str) -> Path:
    bundle["policies"] = ["policies/*.cedar"]
    write_bundle(directory, bundle)
    (directory / "policies").mkdir(exist_ok=True)
    (directory / "policies" / "rules.cedar").write_text(cedar)
    return directory


async def test_a_cedar_forbid_holds_for_every_spelling_of_the_model(
    tmp_path: Path, launch: SidecarLauncher, fake: FakeUpstream, fake_claude: FakeUpstream
) -> None:
    bundle = standard_bundle(fake.url, fake_claude.url)
    bundle["routes"].append({"upstream": "fake"})  # a catch-all route
    sc = await launch(with_policy(bundle, tmp_path / "b", FORBID_GPT4O))
    for model in ("gpt-4o", "GPT-4o", "Gpt-4O-mini"):
        with pytest.raises(openai.PermissionDeniedError) as excinfo:
            await sc.openai().chat.completions.create(
                model=model, messages=[{"role": "user", "content": "hi"}]
            )
        assert "no-gpt-4o" in excinfo.value.message, model
    assert fake.requests == []


async def test_a_tool_forbidden_in_lower_case_is_removed_in_any_spelling(
    tmp_path: Path, launch: SidecarLauncher, fake: FakeUpstream, fake_claude: FakeUpstream
) -> None:
    bundle = standard_bundle(fake.url, fake_claude.url)
    sc = await launch(with_policy(bundle, tmp_path / "b", FORBID_GPT4O.split("\n\n")[1]))
    raw = await sc.openai().chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], tools=TOOLS
    )
    assert raw.headers["x-sidecar-tools-removed"] == "Shell"
    sent = fake.requests[-1].json()
    assert [t["function"]["name"] for t in sent["tools"]] == ["search"]


async def test_routes_and_roles_match_any_spelling_and_the_name_goes_upstream_as_sent(
    tmp_path: Path, launch: SidecarLauncher, fake: FakeUpstream, fake_claude: FakeUpstream
) -> None:
    bundle = standard_bundle(fake.url, fake_claude.url)
    bundle["routes"] = [{"match": {"model": "GPT-*"}, "upstream": "fake"}]
    bundle["roles"] = {"agent": [{"actions": ["llm.*"], "models": ["GPT-4o-Mini"]}]}
    sc = await launch(write_bundle(tmp_path / "b", bundle))
    for model in ("gpt-4o-mini", "GPT-4O-MINI"):
        ok = await sc.openai().chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}]
        )
        assert ok.choices[0].message.content == "fake says: hi"
        assert fake.requests[-1].json()["model"] == model
    with pytest.raises(openai.PermissionDeniedError):
        await sc.openai().chat.completions.create(
            model="GPT-4o", messages=[{"role": "user", "content": "hi"}]
        )
    # /v1/models lists what the caller may use, as the bundle names it.
    listed = [m.id async for m in sc.openai().models.list()]
    assert listed == ["gpt-4o-mini"]


async def test_a_per_model_limit_counts_every_spelling_of_the_model(
    tmp_path: Path, launch: SidecarLauncher, fake: FakeUpstream, fake_claude: FakeUpstream
) -> None:
    bundle = standard_bundle(fake.url, fake_claude.url)
    bundle["limits"] = [
        {
            "id": "one-gpt-4o-call",
            "match": {"models": ["GPT-4o"]},
            "key": ["model"],
            "requests": {"limit": 1, "per": "1h"},
        }
    ]
    sc = await launch(write_bundle(tmp_path / "b", bundle))
    await sc.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    with pytest.raises(openai.RateLimitError):
        await sc.openai(max_retries=0).chat.completions.create(
            model="GPT-4o", messages=[{"role": "user", "content": "hi"}]
        )
    assert len(fake.requests) == 1


def test_check_refuses_a_cedar_name_that_could_never_match(tmp_path: Path) -> None:
    bundle = standard_bundle("http://127.0.0.1:9", "http://127.0.0.1:9")
    cedar = FORBID_GPT4O.replace('"gpt-4o*"', '"GPT-4o*"') + (
        '\n@id("only-search")\npermit (principal, action, resource == Sidecar::Tool::"Search");\n'
    )
    result = run_cli(["check", str(with_policy(bundle, tmp_path / "b", cedar))])
    assert result.returncode != 0, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert "policies/rules.cedar" in out
    assert "no-gpt-4o" in out and "write 'gpt-4o*', not 'GPT-4o*'" in out
    assert "only-search" in out and "write 'search', not 'Search'" in out


async def test_context_tools_holds_folded_names(
    tmp_path: Path, launch: SidecarLauncher, fake: FakeUpstream, fake_claude: FakeUpstream
) -> None:
    cedar = """
@id("no-chat-with-shell")
forbid (principal, action == Sidecar::Action::"llm.chat", resource)
when { context.tools.contains("shell") };
"""
    bundle = standard_bundle(fake.url, fake_claude.url)
    sc = await launch(with_policy(bundle, tmp_path / "b", cedar))
    with pytest.raises(openai.PermissionDeniedError) as excinfo:
        await sc.openai().chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], tools=TOOLS
        )
    assert "no-chat-with-shell" in excinfo.value.message
    assert fake.requests == []
