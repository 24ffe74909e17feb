"""Validate a bundle document: JSON Schema first, then cross-references.

Every problem is reported with the path of the bad field, all at once, so an
operator fixes a bundle in one pass instead of one error per `sidecar check`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import jsonschema


@dataclass(frozen=True, order=True)
class Problem:
    path: str
    message: str
    # The message without the offending value, where `message` quotes it: shown
    # where the bundle's secrets must not be (the admin listener's /bundle).
    without_value: str | None = dataclasses.field(default=None, compare=False)

    def __str__(self) -> str:
        return f"{self.path or '(root)'}: {self.message}"


def format_path(parts: Iterable[str | int]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


@cache
def schema() -> dict[str, Any]:
    text = resources.files("sidecar.bundle").joinpath("schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _validator() -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema())
    return cls(schema())


def validate(document: Any) -> list[Problem]:
    """Every problem at once: schema errors and broken references together."""
    problems = schema_problems(document)
    if isinstance(document, dict):
        problems += reference_problems(document)
    return sorted(set(problems))


def schema_problems(document: Any) -> list[Problem]:
    problems: list[Problem] = []
    for error in _validator().iter_errors(document):
        problems.extend(_explain(error))
    return problems


def _explain(error: jsonschema.ValidationError) -> list[Problem]:
    path = list(error.absolute_path)
    sub: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    instance: Any = error.instance
    expected: Any = error.validator_value
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = list(sub.get("properties", {}))
        extras = [k for k in instance if k not in known]
        return [
            Problem(format_path([*path, k]), f"unknown field '{k}'{_did_you_mean(k, known)}")
            for k in extras
        ]
    if error.validator == "required" and isinstance(expected, list):
        missing = [k for k in expected if k not in instance]
        return [Problem(format_path([*path, k]), "required field is missing") for k in missing]
    if error.validator == "const":
        return [Problem(format_path(path), f"must be {json.dumps(expected)}")]
    if error.validator == "enum":
        options = ", ".join(json.dumps(v) for v in expected)
        return [
            Problem(
                format_path(path),
                f"must be one of {options}, not {json.dumps(error.instance)}",
                f"must be one of {options}",
            )
        ]
    if error.validator in ("minProperties", "maxProperties") and "env" in sub.get("properties", {}):
        return [Problem(format_path(path), "give exactly one of {env: NAME} or {file: PATH}")]
    if error.validator == "pattern":
        return [
            Problem(
                format_path(path),
                f"{json.dumps(error.instance)} does not match {error.validator_value}",
                f"does not match {error.validator_value}",
            )
        ]
    return [Problem(format_path(path), error.message, _without_value(error))]


def _without_value(error: jsonschema.ValidationError) -> str:
    """jsonschema's messages quote the instance, which may be a misplaced credential."""
    expected: Any = error.validator_value
    if error.validator == "type":
        kinds = expected if isinstance(expected, list) else [expected]
        return f"must be of type {' or '.join(str(k) for k in kinds)}"
    if error.validator in ("oneOf", "anyOf"):
        return "matches none of the forms this field accepts"
    if error.validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return f"out of range ({error.validator} {expected})"
    if error.validator in ("minLength", "maxLength", "minItems", "maxItems"):
        return f"wrong size ({error.validator} {expected})"
    return f"invalid value (fails {error.validator})"


def _did_you_mean(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def reference_problems(document: dict[str, Any]) -> list[Problem]:
    """Checks JSON Schema cannot express: names that must refer to something."""
    problems: list[Problem] = []
    upstreams = document.get("upstreams")
    if not isinstance(upstreams, dict):
        upstreams = {}
    routes = document.get("routes")
    names: dict[str, int] = {}
    for i, route in enumerate(routes if isinstance(routes, list) else []):
        if not isinstance(route, dict):
            continue  # the schema has said what is wrong with it
        target = route.get("upstream")
        if isinstance(target, str) and target not in upstreams:
            problems.append(
                Problem(
                    format_path(["routes", i, "upstream"]),
                    f"unknown upstream '{target}'{_did_you_mean(target, list(upstreams))}",
                )
            )
        for j, fallback in enumerate(route.get("fallbacks") or []):
            other = fallback.get("upstream") if isinstance(fallback, dict) else None
            if isinstance(other, str) and other not in upstreams:
                problems.append(
                    Problem(
                        format_path(["routes", i, "fallbacks", j, "upstream"]),
                        f"unknown upstream '{other}'{_did_you_mean(other, list(upstreams))}",
                    )
                )
        hedge = route.get("hedge")
        if isinstance(hedge, dict):
            where = format_path(["routes", i, "hedge"])
            if not route.get("idempotent"):
                problems.append(
                    Problem(where, "hedging sends a call twice: mark the route idempotent: true")
                )
            if not route.get("fallbacks"):
                problems.append(Problem(where, "hedging needs a fallback upstream to send to"))
            if ("after_ms" in hedge) == ("after" in hedge):
                problems.append(Problem(where, "give exactly one of after_ms or after: p95"))
        name = route.get("name")
        if isinstance(name, str):
            if name in names:
                problems.append(
                    Problem(
                        format_path(["routes", i, "name"]),
                        f"duplicate route name '{name}' (also routes[{names[name]}])",
                    )
                )
            names[name] = i
        match = route.get("match")
        for field in ("path", "model"):
            glob = match.get(field) if isinstance(match, dict) else None
            if isinstance(glob, str) and _bad_glob(glob):
                problems.append(
                    Problem(
                        format_path(["routes", i, "match", field]),
                        f"unbalanced '[' in glob {glob!r}",
                    )
                )
    problems += _identity_problems(document.get("identity"))
    return problems


def _identity_problems(identity: Any) -> list[Problem]:
    """A key digest may name one principal only, and a principal one entry."""
    problems: list[Problem] = []
    entries = identity.get("api_keys") if isinstance(identity, dict) else None
    digests: dict[str, int] = {}
    principals: dict[str, int] = {}
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        if not isinstance(entry, dict):
            continue
        principal = entry.get("principal")
        if isinstance(principal, str):
            if principal in principals:
                problems.append(
                    Problem(
                        format_path(["identity", "api_keys", i, "principal"]),
                        f"principal '{principal}' is already defined at "
                        f"identity.api_keys[{principals[principal]}]; list all its keys there",
                    )
                )
            principals.setdefault(principal, i)
        for j, digest in enumerate(entry.get("sha256") or []):
            if not isinstance(digest, str):
                continue
            key = digest.lower()
            if key in digests:
                problems.append(
                    Problem(
                        format_path(["identity", "api_keys", i, "sha256", j]),
                        "the same key digest is already listed at "
                        f"identity.api_keys[{digests[key]}]",
                    )
                )
            digests.setdefault(key, i)
    return problems


def _bad_glob(glob: str) -> bool:
    depth = 0
    for ch in glob:
        if ch == "[":
            depth += 1
        elif ch == "]" and depth:
            depth -= 1
    return depth != 0
