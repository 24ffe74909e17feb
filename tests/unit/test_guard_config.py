"""The guards section compiles into per-stage guards, or into problems with field paths."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.guards.config import compile_guards
from sidecar.guards.stage import Subject, applicable


def problems(section: dict[str, Any]) -> list[str]:
    return [str(p) for p in compile_guards(section, b"s")[1]]


def test_unknown_pii_types_and_bad_options_are_reported_by_path() -> None:
    found = problems(
        {
            "input": [{"id": "p", "kind": "pii", "types": ["EMAIL", "PASSPORT"]}],
            "output": [{"id": "r", "kind": "pii", "phone_regions": ["XX"]}],
            "tool": [{"id": "e", "kind": "egress", "allow_hosts": ["http://bad/"]}],
        }
    )
    assert any(p.startswith("guards.input[0].types[1]: unknown PII type 'PASSPORT'") for p in found)
    assert any(p.startswith("guards.output[0].phone_regions:") for p in found)
    assert any(
        p.startswith("guards.tool[0].allow_hosts[0]: 'http://bad/' is not a host") for p in found
    )


def test_a_custom_pii_type_is_known_once_a_pattern_defines_it() -> None:
    section = {
        "output": [
            {
                "id": "ids",
                "kind": "pii",
                "types": ["EMAIL", "EMPLOYEE_ID"],
                "patterns": [{"type": "EMPLOYEE_ID", "regex": r"E-\d{6}", "max_length": 8}],
            }
        ]
    }
    guards, found = compile_guards(section, b"s")
    assert found == []
    detector = guards.output[0].detector
    assert detector is not None
    text = "mail a@b.io about E-123456, not 4111 1111 1111 1111"
    assert [f.type for f in detector.scan(text)] == ["EMAIL", "EMPLOYEE_ID"]
    assert guards.output[0].hold == 7


@pytest.mark.parametrize(
    ("scope", "subject", "applies"),
    [
        ({}, Subject("any", "t", "m", frozenset()), True),
        ({"tenants": ["acme"]}, Subject("r", "acme", "gpt-4o", frozenset()), True),
        ({"tenants": ["acme"]}, Subject("r", "other", "gpt-4o", frozenset()), False),
        ({"models": ["gpt-*"]}, Subject("r", "t", "gpt-4o", frozenset()), True),
        ({"models": ["gpt-*"]}, Subject("r", "t", "claude-x", frozenset()), False),
        ({"routes": ["open*"]}, Subject("openai", "t", None, frozenset()), True),
        ({"roles": ["analyst"]}, Subject("r", "t", None, frozenset({"analyst", "x"})), True),
        ({"roles": ["analyst"]}, Subject("r", "t", None, frozenset({"agent"})), False),
    ],
)
def test_scope(scope: dict[str, Any], subject: Subject, applies: bool) -> None:
    guards, _ = compile_guards(
        {"input": [{"id": "d", "kind": "size", "max_chars": 9, "scope": scope}]}, b""
    )
    assert bool(applicable(guards.input, subject)) is applies


@pytest.mark.parametrize(
    ("guard", "expected"),
    [
        (
            {"id": "d", "kind": "deny", "words": ["x"], "patterns": []},
            "guards.input[0].patterns: a deny guard does not read 'patterns'; it takes: "
            "topics, words",
        ),
        (
            {"id": "s", "kind": "secrets", "threshold": 0.2},
            "guards.input[0].threshold: a secrets guard does not read 'threshold'",
        ),
        (
            {"id": "e", "kind": "egress", "schemas": {}},
            "guards.input[0].schemas: an egress guard does not read 'schemas'",
        ),
        ({"id": "d", "kind": "deny"}, "guards.input[0]: a deny guard needs 'words' or 'topics'"),
        (
            {"id": "z", "kind": "size", "max_chars": 9, "scan_limit": 5},
            "guards.input[0].scan_limit: a size guard does not scan text",
        ),
        (
            {"id": "w", "kind": "webhook", "webhook": {"url": "http://x"}, "over_limit": "pass"},
            "guards.input[0].over_limit: a webhook guard does not scan text",
        ),
    ],
)
def test_an_option_of_another_kind_or_a_guard_with_nothing_to_find_is_refused(
    guard: dict[str, Any], expected: str
) -> None:
    found = problems({"input": [guard]})
    assert any(p.startswith(expected) for p in found), found


def test_every_kind_accepts_its_own_options() -> None:
    section = {
        "input": [
            {"id": "i", "kind": "prompt_injection", "threshold": 0.6, "decode": False},
            {"id": "s", "kind": "secrets", "entropy_threshold": 4.0},
            {"id": "p", "kind": "pii", "types": ["EMAIL"], "phone_regions": ["GB"]},
            {"id": "d", "kind": "deny", "topics": {"golf": ["putter"]}},
            {"id": "z", "kind": "size", "max_chars": 10, "max_tokens": 5},
        ],
        "tool": [
            {"id": "e", "kind": "egress", "allow_hosts": ["*.x.io"], "block_private": True},
            {"id": "a", "kind": "arg_injection", "types": ["SHELL_INJECTION"]},
            {"id": "t", "kind": "tool_schema", "schemas": {"f": {"type": "object"}}},
        ],
    }
    assert problems(section) == []
