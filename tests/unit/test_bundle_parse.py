"""The bounded parsers: shape measured before any recursive parser runs."""

from __future__ import annotations

import json

import pytest

from sidecar.bundle.parse import (
    DocumentShapeError,
    ShapeLimits,
    cedar_nesting,
    json_depth,
    parse_json,
    parse_yaml,
)

LIMITS = ShapeLimits(max_depth=64, max_nodes=10_000)


def nested_yaml(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_yaml_within_the_bounds_parses() -> None:
    assert parse_yaml(f"a: {nested_yaml(63)}\n".encode(), LIMITS)["a"] is not None


def test_yaml_one_level_too_deep_is_refused() -> None:
    with pytest.raises(DocumentShapeError, match="more than 64 levels deep"):
        parse_yaml(f"a: {nested_yaml(64)}\n".encode(), LIMITS)


def test_an_alias_counts_as_the_depth_it_names() -> None:
    """Each part shallow enough on its own; the alias puts one inside the other."""
    text = f"base: &deep {nested_yaml(40)}\nuse: {'[' * 30}*deep{']' * 30}\n"
    with pytest.raises(DocumentShapeError, match=r"alias \*deep nests"):
        parse_yaml(text.encode(), LIMITS)
    ok = f"base: &deep {nested_yaml(20)}\nuse: {'[' * 20}*deep{']' * 20}\n"
    assert parse_yaml(ok.encode(), LIMITS)["use"] is not None


def test_an_alias_counts_as_the_values_it_names() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 5)]
    with pytest.raises(DocumentShapeError, match="10000 values once aliases are expanded"):
        parse_yaml("\n".join(lines).encode(), LIMITS)


@pytest.mark.parametrize(
    "text",
    ["a: 1\nb: 2\na: 3\n", "m: {k: 1, k: 2}\n", "- {x: 1}\n- x: 1\n  y: 2\n  x: 3\n"],
)
def test_duplicate_yaml_keys_are_refused(text: str) -> None:
    with pytest.raises(DocumentShapeError, match="duplicate key"):
        parse_yaml(text.encode(), LIMITS)


def test_yaml_merge_keys_may_be_overridden() -> None:
    doc = parse_yaml(b"base: &b {x: 1, y: 2}\nm: {<<: *b, x: 3}\n", LIMITS)
    assert doc["m"] == {"x": 3, "y": 2}


def test_json_depth_skips_strings() -> None:
    assert json_depth(b'{"a": "[[[{{{", "b": [["\\"]]]"]]}') == 3
    assert json_depth(b"[]") == 1
    assert json_depth(b'"no brackets"') == 0


def test_json_depth_is_linear_on_unclosed_strings() -> None:
    """Every quote starts a match that succeeds, so no quadratic rescans."""
    assert json_depth(b'["' + b'\\"' * 200_000) == 1
    assert json_depth(b'["' + b'\\"' * 200_000 + b"\\") == 1


def test_json_bounds_and_duplicates() -> None:
    assert parse_json(json.dumps({"a": [[1]]}).encode(), LIMITS) == {"a": [[1]]}
    with pytest.raises(DocumentShapeError, match="nested 65 levels deep"):
        parse_json(("[" * 65 + "]" * 65).encode(), LIMITS)
    with pytest.raises(DocumentShapeError, match='duplicate key "a"'):
        parse_json(b'{"a": 1, "b": {"a": 1}, "a": 2}', LIMITS)


def test_cedar_nesting() -> None:
    head = "permit (principal, action, resource) when { "
    assert cedar_nesting(head + "true };") < 10
    assert cedar_nesting(head + " && ".join(["true"] * 500) + " };") >= 500
    assert cedar_nesting(head + "(" * 300 + "true" + ")" * 300 + " };") >= 300
    # Brackets and operators inside strings and comments do not count.
    quoted = head + 'resource.name like "((((((&&&&&&" // ((((((( && && &&\n };'
    assert cedar_nesting(quoted) < 10
    # A balanced tree of groups stays shallow however many tests it holds.
    tests = [f'resource.name like "m{i}"' for i in range(4096)]
    while len(tests) > 8:
        tests = [f"({' || '.join(tests[i : i + 8])})" for i in range(0, len(tests), 8)]
    assert cedar_nesting(head + " || ".join(tests) + " };") < 200
