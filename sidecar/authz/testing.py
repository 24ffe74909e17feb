"""`sidecar test`: run a bundle's own decision tests, like `opa test`.

Each test names a caller, an action, a model or tool, and the call's
context, and says which decision it must get (and, optionally, which
policies must decide). The bundle is compiled exactly as `sidecar run`
would, so a passing suite describes the policy that will be enforced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TextIO

from sidecar.bundle.check import load_or_report
from sidecar.bundle.load import DEFAULT_LIMITS, ReadLimits
from sidecar.bundle.snapshot import Snapshot
from sidecar.identity.principal import PodIdentity, Principal

DEFAULT_CONTEXT: dict[str, Any] = {
    "stream": False,
    "token_estimate": 0,
    "max_output_tokens": 0,
    "tools": frozenset(),
    "hour_utc": 12,
    "weekday_utc": 3,
}


@dataclass(frozen=True)
class Outcome:
    name: str
    passed: bool
    detail: str


def principal_for(spec: str | dict[str, Any], snapshot: Snapshot, pod: Principal) -> Principal:
    if isinstance(spec, dict):
        return Principal(
            id=spec["id"],
            tenant=spec.get("tenant", "default"),
            agent=spec.get("agent") or spec["id"],
            user=spec.get("user", ""),
            roles=frozenset(spec.get("roles") or ()),
            via=spec.get("via", "api_key"),
        )
    if spec == "pod":
        return pod
    for entry in snapshot.identity.keys.values():
        if entry.principal.id == spec:
            return entry.principal
    raise LookupError(f"no principal '{spec}' in identity.api_keys (use 'pod' or spell it out)")


def run_tests(snapshot: Snapshot, tests: list[dict[str, Any]], pod: Principal) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for test in tests:
        name = test["name"]
        try:
            principal = principal_for(test["principal"], snapshot, pod)
        except LookupError as exc:
            outcomes.append(Outcome(name, False, str(exc)))
            continue
        if "tool" in test:
            resource_type, resource_id = "Tool", test["tool"]
        else:
            resource_type, resource_id = "Model", test.get("model", "")
        context = {**DEFAULT_CONTEXT, "tenant": principal.tenant, **(test.get("context") or {})}
        context["tools"] = frozenset(context["tools"])
        decision = snapshot.authorizer.decide(
            principal, test["action"], resource_type, resource_id, context
        )
        got = "allow" if decision.allowed else "deny"
        deciders = list(decision.policies)
        problems = []
        if got != test["expect"]:
            problems.append(f"expected {test['expect']}, got {got}")
        if "policies" in test and sorted(test["policies"]) != sorted(deciders):
            problems.append(f"expected policies {sorted(test['policies'])}, got {sorted(deciders)}")
        detail = f"{got} by {', '.join(deciders) or 'default deny'}"
        if decision.errors:
            detail += f"; policy errors: {'; '.join(decision.errors)}"
        if problems:
            detail = "; ".join(problems) + f" ({detail})"
        outcomes.append(Outcome(name, not problems, detail))
    return outcomes


def test_command(
    source: str, out: TextIO, err: TextIO, pod: PodIdentity, limits: ReadLimits = DEFAULT_LIMITS
) -> int:
    snapshot = load_or_report(source, err, limits)
    if snapshot is None:
        return 1
    tests = snapshot.tests
    if not tests:
        print(f"{source}: the bundle has no tests", file=err)
        return 1
    pod_principal = Principal(
        pod.agent, pod.tenant, pod.agent, roles=snapshot.identity.pod_roles, via="pod"
    )
    outcomes = run_tests(snapshot, list(tests), pod_principal)
    for o in outcomes:
        print(f"{'PASS' if o.passed else 'FAIL'}  {o.name}: {o.detail}", file=out)
    failed = sum(not o.passed for o in outcomes)
    print(f"{len(outcomes) - failed} passed, {failed} failed", file=out)
    return 1 if failed else 0
