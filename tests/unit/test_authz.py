"""Authorization: roles compiled into Cedar, policy files validated at load, decisions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import sidecar.authz.authorize as authorize_module
from sidecar.authz.policy import context_keys
from sidecar.bundle.compile import BundleInvalid, load_snapshot
from sidecar.bundle.snapshot import Snapshot
from sidecar.identity.principal import Principal

ANALYST = Principal("bot-a", "acme", "bot-a", roles=frozenset({"analyst"}), via="api_key")
INTERN = Principal("bot-i", "acme", "bot-i", roles=frozenset({"analyst", "intern"}))
NOBODY = Principal("bot-n", "globex", "bot-n")
CTX: dict[str, Any] = {
    "tenant": "acme",
    "stream": False,
    "token_estimate": 10,
    "max_output_tokens": 0,
    "tools": frozenset(),
    "hour_utc": 12,
    "weekday_utc": 3,
}

NO_STREAM = """
@id("interns-may-not-stream")
forbid (principal in Sidecar::Role::"intern", action, resource)
when { context.stream };
"""
BUSINESS_HOURS = """
@id("acme-gpt4o-business-hours")
forbid (principal, action, resource is Sidecar::Model)
when { principal.tenant == "acme" && resource.name like "gpt-4o*" &&
       (context.hour_utc < 8 || context.hour_utc >= 18) };
"""


def bundle(tmp_path: Path, extra: dict[str, Any], files: dict[str, str] | None = None) -> Path:
    doc = {"apiVersion": "sidecar/v1", "revision": "r", **extra}
    (tmp_path / "bundle.yaml").write_text(yaml.safe_dump(doc))
    for name, text in (files or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def snapshot(tmp_path: Path) -> Snapshot:
    return load_snapshot(
        bundle(
            tmp_path,
            {
                "roles": {
                    "analyst": [
                        {"actions": ["llm.chat", "llm.responses"], "models": ["gpt-4o*", "mock-*"]},
                        {"actions": ["llm.embeddings"], "models": ["text-embedding-3-small"]},
                    ]
                },
                "policies": ["policies/*.cedar"],
            },
            {"policies/stream.cedar": NO_STREAM, "policies/hours.cedar": BUSINESS_HOURS},
        )
    )


def test_roles_permit_exactly_what_they_list(tmp_path: Path) -> None:
    authz = snapshot(tmp_path).authorizer
    allowed = authz.decide(ANALYST, "llm.chat", "Model", "gpt-4o-mini", CTX)
    assert allowed.allowed and allowed.policies == ("role:analyst[0]",)
    assert authz.decide(ANALYST, "llm.embeddings", "Model", "text-embedding-3-small", CTX).allowed
    for action, model in [
        ("llm.chat", "gpt-3.5-turbo"),
        ("llm.embeddings", "gpt-4o"),
        ("llm.completion", "gpt-4o"),
    ]:
        denied = authz.decide(ANALYST, action, "Model", model, CTX)
        assert not denied.allowed and denied.policies == ()  # default deny: nothing decided
    assert not authz.decide(NOBODY, "llm.chat", "Model", "gpt-4o", CTX).allowed


def test_forbid_wins_over_permit(tmp_path: Path) -> None:
    authz = snapshot(tmp_path).authorizer
    streaming = {**CTX, "stream": True}
    assert authz.decide(ANALYST, "llm.chat", "Model", "mock-echo", streaming).allowed
    denied = authz.decide(INTERN, "llm.chat", "Model", "mock-echo", streaming)
    assert not denied.allowed and denied.policies == ("interns-may-not-stream",)
    assert authz.decide(INTERN, "llm.chat", "Model", "mock-echo", CTX).allowed


def test_abac_on_time_and_the_cache_keys_on_what_policies_read(tmp_path: Path) -> None:
    authz = snapshot(tmp_path).authorizer
    assert authz.decide(ANALYST, "llm.chat", "Model", "gpt-4o", CTX).allowed
    night = {**CTX, "hour_utc": 23}
    decision = authz.decide(ANALYST, "llm.chat", "Model", "gpt-4o", night)
    assert not decision.allowed and decision.policies == ("acme-gpt4o-business-hours",)
    # Same call again at noon: the cached night decision must not leak into the day.
    assert authz.decide(ANALYST, "llm.chat", "Model", "gpt-4o", CTX).allowed
    assert authz.decide(ANALYST, "llm.chat", "Model", "mock-echo", night).allowed


def test_a_hot_decision_stays_cached_while_new_calls_churn_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A decision served from the cache is the very object decided before; a fresh
    # evaluation builds a new one.
    monkeypatch.setattr(authorize_module, "CACHE_LIMIT", 32)
    authz = snapshot(tmp_path).authorizer
    hot = authz.decide(ANALYST, "llm.chat", "Model", "gpt-4o", CTX)
    cold = authz.decide(ANALYST, "llm.chat", "Model", "mock-cold", CTX)
    for i in range(200):  # many times the cache's size, each a key never seen before
        assert authz.decide(ANALYST, "llm.chat", "Model", f"mock-{i}", CTX).allowed
        assert authz.decide(ANALYST, "llm.chat", "Model", "gpt-4o", CTX) is hot
    again = authz.decide(ANALYST, "llm.chat", "Model", "mock-cold", CTX)
    assert again == cold and again is not cold  # bounded: the unused entry went


def test_no_roles_and_no_policies_deny_everything(tmp_path: Path) -> None:
    authz = load_snapshot(bundle(tmp_path, {})).authorizer
    assert authz.policy_count == 0
    assert not authz.decide(ANALYST, "llm.chat", "Model", "gpt-4o", CTX).allowed


def test_policy_errors_fail_the_bundle_with_their_file(tmp_path: Path) -> None:
    files = {
        "policies/typo.cedar": '@id("typo")\npermit (principal, action, resource)\n'
        'when { principal.tenent == "acme" };\n',
        "policies/syntax.cedar": "permit (principal, action resource);\n",
        "policies/action.cedar": 'permit (principal, action == Sidecar::Action::"llm.chatt", '
        "resource);\n",
    }
    extra = {
        "roles": {"x": [{"actions": ["llm.talk"]}]},
        "policies": ["policies/*.cedar", "missing/*.cedar"],
    }
    with pytest.raises(BundleInvalid) as info:
        load_snapshot(bundle(tmp_path, extra, files))
    problems = [str(p) for p in info.value.problems]
    assert any(p.startswith("roles.x[0].actions[0]: must be one of") for p in problems)
    # roles are broken, so the policy files are not compiled yet; fix roles and look again
    extra["roles"] = {"x": [{"actions": ["llm.chat"]}]}
    with pytest.raises(BundleInvalid) as info:
        load_snapshot(bundle(tmp_path, extra, files))
    problems = [str(p) for p in info.value.problems]
    assert "policies[1]: no file in the bundle matches 'missing/*.cedar'" in problems
    assert any(
        p.startswith("policies/typo.cedar:3: @id('typo'):") and "tenent" in p for p in problems
    )
    assert any(p.startswith("policies/syntax.cedar:1: Cedar syntax error") for p in problems)
    assert any(p.startswith("policies/action.cedar:") and "llm.chatt" in p for p in problems)


def test_duplicate_policy_ids_are_rejected(tmp_path: Path) -> None:
    files = {"a.cedar": NO_STREAM, "b.cedar": NO_STREAM}
    with pytest.raises(BundleInvalid) as info:
        load_snapshot(bundle(tmp_path, {"policies": ["*.cedar"]}, files))
    assert any(
        "duplicate policy @id('interns-may-not-stream')" in str(p) for p in info.value.problems
    )


def test_context_keys() -> None:
    assert context_keys([NO_STREAM, BUSINESS_HOURS]) == frozenset({"stream", "hour_utc"})
    assert context_keys(
        ["permit (principal, action, resource) when { context has tools };"]
    ) == frozenset({"tools"})
    # an unrecognised use of the context (here, a comment) means the whole context counts
    assert context_keys(["// uses context\npermit (principal, action, resource);"]) is None


LONG_FILE = """// tenant rules
@id("first")
permit (principal, action, resource);

// a comment with a ; and "quotes"
@id("second")
forbid (principal, action, resource)
when {
  principal.tenant == "a;b" &&
  resource.nmae like "gpt-*"
};
"""


def test_errors_point_at_the_line(tmp_path: Path) -> None:
    extra = {"policies": ["*.cedar"]}
    with pytest.raises(BundleInvalid) as info:
        load_snapshot(bundle(tmp_path, extra, {"rules.cedar": LONG_FILE}))
    problems = [str(p) for p in info.value.problems]  # one per resource type it could be
    assert problems and all(
        p.startswith("rules.cedar:10: @id('second'):") and "nmae" in p for p in problems
    )
    broken = LONG_FILE.replace("forbid (principal, action, resource)", "forbid (principal action)")
    with pytest.raises(BundleInvalid) as info:
        load_snapshot(bundle(tmp_path, extra, {"rules.cedar": broken}))
    [problem] = [str(p) for p in info.value.problems]
    assert problem.startswith("rules.cedar:7: Cedar syntax error")


SCOPES = """
@id("all") permit (principal, action == Sidecar::Action::"llm.embeddings", resource);
@id("eq") permit (principal == Sidecar::Principal::"p1", action, resource is Sidecar::Model);
@id("role") permit (principal in Sidecar::Role::"r1", action in [Sidecar::Action::"llm.chat",
  Sidecar::Action::"llm.responses"], resource) when { resource.name like "m1*" };
@id("tenant") permit (principal is Sidecar::Principal in Sidecar::Tenant::"t1", action,
  resource == Sidecar::Model::"m2");
@id("tool") permit (principal in Sidecar::Role::"r2", action == Sidecar::Action::"tool.call",
  resource is Sidecar::Tool);
@id("no-stream") forbid (principal in Sidecar::Tenant::"t2", action, resource)
  when { context.stream };
@id("roleless") forbid (principal is Sidecar::Principal, action, resource is Sidecar::Model)
  when { principal.user == "banned" };
"""


def test_scope_subsets_decide_exactly_like_the_whole_policy_set(tmp_path: Path) -> None:
    import itertools
    import json

    import cedarpy

    snap = load_snapshot(bundle(tmp_path, {"policies": ["s.cedar"]}, {"s.cedar": SCOPES}))
    authz = snap.authorizer
    full = cedarpy.PolicySet.from_str(SCOPES)
    principals = [
        Principal(pid, tenant, pid, user=user, roles=frozenset(roles))
        for pid, tenant, user, roles in itertools.product(
            ["p1", "p2"], ["t1", "t2"], ["", "banned"], [(), ("r1",), ("r1", "r2")]
        )
    ]
    actions = ["llm.chat", "llm.embeddings", "llm.responses", "tool.call"]
    checked = 0
    for principal, action, resource, stream in itertools.product(
        principals, actions, ["m1-big", "m2", "x"], [False, True]
    ):
        kind = "Tool" if action == "tool.call" else "Model"
        context = {**CTX, "tenant": principal.tenant, "stream": stream}
        ours = authz.decide(principal, action, kind, resource, context)
        entities = [
            {
                "uid": {"type": "Sidecar::Principal", "id": principal.id},
                "attrs": {
                    "tenant": principal.tenant,
                    "agent": principal.agent,
                    "user": principal.user,
                    "via": principal.via,
                },
                "parents": [{"type": "Sidecar::Role", "id": r} for r in principal.roles]
                + [{"type": "Sidecar::Tenant", "id": principal.tenant}],
            },
            {
                "uid": {"type": f"Sidecar::{kind}", "id": resource},
                "attrs": {"name": resource},
                "parents": [],
            },
        ]
        request = {
            "principal": {"type": "Sidecar::Principal", "id": principal.id},
            "action": {"type": "Sidecar::Action", "id": action},
            "resource": {"type": f"Sidecar::{kind}", "id": resource},
            "context": {**context, "tools": []},
        }
        reference = cedarpy.is_authorized(request, full, json.dumps(entities))
        assert not reference.diagnostics.errors
        assert ours.allowed == reference.allowed, (principal, action, resource, stream)
        labels = {
            f"policy{i}": label
            for i, label in enumerate(
                ["all", "eq", "role", "tenant", "tool", "no-stream", "roleless"]
            )
        }
        assert sorted(ours.policies) == sorted(labels[r] for r in reference.diagnostics.reasons)
        checked += 1
    assert checked == len(principals) * len(actions) * 3 * 2
