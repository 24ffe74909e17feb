"""Where a redaction may go in a tool call's JSON arguments, whole or in pieces."""

from __future__ import annotations

import json
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.guards import redact
from sidecar.guards.finding import Finding
from sidecar.guards.json_text import JsonStrings, in_strings, string_stretches

ARGS = '{"bytes": 2147483648, "note": "a\\nb \\u00e9 \\"q\\" 4155552671", "n": [1, "x"]}'


def span(text: str, part: str) -> tuple[int, int]:
    start = text.index(part)
    return start, start + len(part)


@pytest.mark.parametrize(
    ("part", "allowed"),
    [
        ("2147483648", False),  # a bare number
        ("4155552671", True),  # inside a string
        ('"note"', False),  # across quotes
        ("a\\nb", True),  # a whole escape inside
        ("nb", False),  # starts inside the escape `\n`
        ("u00e9", False),
        ("\\u00e9", True),
        ('4155552671"', False),  # runs over the closing quote
    ],
)
def test_a_span_is_allowed_only_inside_one_string_without_cutting_an_escape(
    part: str, allowed: bool
) -> None:
    assert string_stretches(ARGS).holds(*span(ARGS, part)) is allowed


def test_plain_text_arguments_allow_any_span() -> None:
    assert string_stretches("free text 2147483648").holds(10, 20)
    assert string_stretches("  ").holds(0, 2)


def test_edits_left_keep_the_json_valid_and_its_types() -> None:
    edits: list[tuple[Finding, redact.Operator]] = [
        (Finding("pii", "PHONE", *span(ARGS, "2147483648")), "placeholder"),
        (Finding("pii", "PHONE", *span(ARGS, "4155552671")), "placeholder"),
    ]
    kept = in_strings(ARGS, edits)
    out = json.loads(redact.apply(ARGS, kept))
    assert out["bytes"] == 2147483648
    assert out["note"].endswith('"q" [PHONE]')


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_pieces_give_the_same_answer_as_the_whole(data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(1, len(ARGS) - 1), max_size=12)))
    bounds = [0, *cuts, len(ARGS)]
    tracker = JsonStrings()
    whole = string_stretches(ARGS)
    for a, b in pairwise(bounds):
        piece = tracker.feed(ARGS[a:b])
        for s in range(b - a + 1):
            for e in range(s + 1, b - a + 1):
                assert piece.holds(s, e) == whole.holds(a + s, a + e), (a, b, s, e)
