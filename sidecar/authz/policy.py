"""Compile a bundle's `roles` and `policies/*.cedar` into one validated Cedar policy set.

Everything here runs at bundle load: roles become Cedar `permit` policies,
every policy is parsed and validated against the shipped Cedar schema (so a
typo fails `sidecar check`, not a request), and each engine-assigned policy
id is mapped to the `@id` an operator wrote, for error messages and logs.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import cedarpy

from sidecar.authz.folded_names import unfolded_names
from sidecar.authz.locate import error_line, line_of, policy_spans
from sidecar.bundle.load import MAX_POLICY_NESTING
from sidecar.bundle.parse import cedar_nesting
from sidecar.bundle.validate import Problem, format_path
from sidecar.names import fold

LLM_ACTIONS = (
    "llm.chat",
    "llm.completion",
    "llm.embeddings",
    "llm.responses",
    "llm.count_tokens",
    "llm.models",
)
ALL_ACTIONS = (*LLM_ACTIONS, "tool.call")
ACTION_GROUPS = {"*": ALL_ACTIONS, "llm.*": LLM_ACTIONS, "tool.*": ("tool.call",)}

_CONTEXT_FIELD = re.compile(
    r"\bcontext\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*\"([^\"]+)\"\s*\]|\s+has\s+([A-Za-z_]\w*))"
)
_CONTEXT_WORD = re.compile(r"\bcontext\b")


@dataclass(frozen=True)
class CompiledPolicies:
    policy_set: cedarpy.PolicySet
    labels: dict[str, str]  # engine policy id -> @id or "<file>#<n>"
    context_keys: frozenset[str] | None  # fields any policy reads; None: the whole context
    count: int
    est: dict[str, dict[str, Any]]  # engine policy id -> its JSON form (scopes, conditions)


@cache
def cedar_schema() -> cedarpy.Schema:
    text = resources.files("sidecar.authz").joinpath("schema.cedarschema").read_text("utf-8")
    return cedarpy.Schema.from_str(text)


def _like(pattern: str) -> str:
    # Cedar `like` takes `*` as its only wildcard; quotes and backslashes are escaped.
    return pattern.replace("\\", "\\\\").replace('"', '\\"')


def role_sources(roles: dict[str, Any]) -> list[tuple[str, str]]:
    """Cedar `permit`s for each role rule: `role:<name>[<i>]` for its LLM actions on the
    rule's models, and (`...:tools` when the rule has both kinds) tool.call on its tools."""
    sources: list[tuple[str, str]] = []
    for role, rules in roles.items():
        for i, rule in enumerate(rules):
            actions: list[str] = []
            for name in rule["actions"]:
                for action in ACTION_GROUPS.get(name, (name,)):
                    if action not in actions:
                        actions.append(action)
            llm = [a for a in actions if a != "tool.call"]
            label = f"role:{role}[{i}]"
            where = format_path(["roles", role, i])
            if llm:
                sources.append(
                    (where, _permit(label, role, llm, "Model", rule.get("models") or ["*"]))
                )
            if "tool.call" in actions:
                tool_label = f"{label}:tools" if llm else label
                sources.append(
                    (
                        where,
                        _permit(
                            tool_label, role, ["tool.call"], "Tool", rule.get("tools") or ["*"]
                        ),
                    )
                )
    return sources


def _permit(label: str, role: str, actions: list[str], kind: str, patterns: list[str]) -> str:
    action_list = ", ".join(f'Sidecar::Action::"{a}"' for a in actions)
    condition = ""
    if "*" not in patterns:
        tests = _any_of([f'resource.name like "{_like(fold(p))}"' for p in patterns])
        condition = f" when {{ {tests} }}"
    return (
        f'@id("{label}")\n'
        f'permit (principal in Sidecar::Role::"{role}", action in [{action_list}], '
        f"resource is Sidecar::{kind}){condition};\n"
    )


def _any_of(tests: list[str], fan: int = 8) -> str:
    """`a || b || ...` as a balanced tree of parenthesised groups of `fan`.

    A flat chain parses one level deeper per test; a role listing thousands of
    models or tools would nest past what the Cedar parser survives.
    """
    while len(tests) > fan:
        tests = [f"({' || '.join(tests[i : i + fan])})" for i in range(0, len(tests), fan)]
    return " || ".join(tests)


def policy_file_sources(
    patterns: list[str], files: dict[str, bytes]
) -> tuple[list[tuple[str, str]], list[Problem]]:
    sources: list[tuple[str, str]] = []
    problems: list[Problem] = []
    for i, pattern in enumerate(patterns):
        matched = sorted(name for name in files if fnmatch.fnmatchcase(name, pattern))
        if not matched:
            problems.append(
                Problem(format_path(["policies", i]), f"no file in the bundle matches {pattern!r}")
            )
        for name in matched:
            try:
                sources.append((name, files[name].decode("utf-8")))
            except UnicodeDecodeError:
                problems.append(Problem(name, "not UTF-8 text"))
    return sources, problems


def compile_policies(
    document: dict[str, Any], files: dict[str, bytes]
) -> tuple[CompiledPolicies | None, list[Problem]]:
    """Parse and validate every policy; return the policy set or every problem found."""
    sources = role_sources(document.get("roles") or {})
    file_sources, problems = policy_file_sources(document.get("policies") or [], files)
    sources += file_sources
    labels: dict[str, str] = {}
    est_by_id: dict[str, dict[str, Any]] = {}
    seen_ids: dict[str, str] = {}
    texts: list[str] = []
    offset = 0
    for where, text in sources:
        # Measured before the parser sees the text: too deep a policy crashes it.
        depth = cedar_nesting(text)
        if depth > MAX_POLICY_NESTING:
            problems.append(
                Problem(
                    where,
                    f"a policy's expression nests about {depth} levels deep (the limit is "
                    f"{MAX_POLICY_NESTING}): group long && / || chains in parentheses or "
                    "test membership with `in [...]`",
                )
            )
            continue
        try:
            est = json.loads(cedarpy.policies_to_json_str(text))
        except ValueError as exc:
            problems.append(
                Problem(_syntax_location(where, text), f"Cedar syntax error: {_first_line(exc)}")
            )
            continue
        if est.get("templates"):
            problems.append(Problem(where, "policy templates are not supported"))
            continue
        result = cedarpy.validate_policies(text, cedar_schema())
        for error in result.errors:
            annotation = result.id_annotations_by_policy_id.get(error.policy_id)
            name = f"@id({annotation!r})" if annotation else error.policy_id
            index = int(error.policy_id.removeprefix("policy") or 0)
            line = error_line(text, index, error.error) if where in files else None
            problems.append(Problem(f"{where}:{line}" if line else where, f"{name}: {error.error}"))
        statics: dict[str, Any] = est.get("staticPolicies") or {}
        for local_id in _ordered(statics):
            annotation = (statics[local_id].get("annotations") or {}).get("id")
            label = annotation or f"{where}#{local_id.removeprefix('policy')}"
            if annotation:
                if annotation in seen_ids:
                    problems.append(
                        Problem(
                            where,
                            f"duplicate policy @id({annotation!r}), also in {seen_ids[annotation]}",
                        )
                    )
                seen_ids[annotation] = where
            unfolded = unfolded_names(statics[local_id]) if where in files else []
            if unfolded:
                spellings = ", ".join(f"{fold(n)!r}, not {n!r}" for n in unfolded)
                problems.append(
                    Problem(
                        where,
                        f"{label}: model and tool names are matched without regard to case, "
                        f"in lower case: write {spellings}",
                    )
                )
            labels[f"policy{offset}"] = label
            est_by_id[f"policy{offset}"] = statics[local_id]
            offset += 1
        texts.append(text)
    if problems:
        return None, problems
    full = "\n".join(texts)
    try:
        policy_set = cedarpy.PolicySet.from_str(full)
    except ValueError as exc:  # pragma: no cover - each source parsed on its own above
        return None, [Problem("policies", f"Cedar: {_first_line(exc)}")]
    return CompiledPolicies(policy_set, labels, context_keys(texts), offset, est_by_id), []


def _syntax_location(where: str, text: str) -> str:
    """file:line of the first policy that does not parse on its own."""
    if where.startswith("roles"):
        return where
    for start, end in policy_spans(text):
        try:
            cedarpy.policies_to_json_str(text[start:end])
        except ValueError as exc:
            line = error_line(text[:end], len(policy_spans(text[:start])), str(exc))
            return f"{where}:{line or line_of(text, start)}"
    return where


def _ordered(statics: dict[str, Any]) -> list[str]:
    return sorted(statics, key=lambda k: int(k.removeprefix("policy") or 0))


def context_keys(texts: list[str]) -> frozenset[str] | None:
    """Which context fields the policies read, so decisions can be cached on just those.

    Conservative: any mention of `context` not in a recognised form (a field
    access, an index or `has`) means the whole context matters.
    """
    keys: set[str] = set()
    for text in texts:
        spans = []
        for match in _CONTEXT_FIELD.finditer(text):
            keys.add(next(g for g in match.groups() if g))
            spans.append(match.start())
        if len(spans) != len(_CONTEXT_WORD.findall(text)):
            return None
    return frozenset(keys)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
