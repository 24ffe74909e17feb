"""Property: the adapters accept a request body exactly when no object in it repeats a key
or holds two keys that differ only in case — whatever the layout, at any depth.

Bodies are written from pair lists (so keys may repeat), in compact SDK layout (which
takes the fast path), with spaces and `\\uXXXX` escapes (the exact path) or with keys
partly spelled as escapes. The expected answer comes from the pair lists themselves.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.adapters.anthropic import ADAPTER as ANTHROPIC
from sidecar.adapters.openai import ADAPTER as OPENAI
from sidecar.errors import SidecarError


class Obj(list[tuple[str, Any]]):
    """A JSON object as written: pairs in order, repeats allowed."""


KEYS = st.sampled_from(
    [
        *("model", "Model", "content", "CONTENT", "role", "a", "b", "\u212aind", "kind"),
        *("\u017ftream", "stream", "ß", "ss", "x y", 'q"uote', "back\\slash", "ünï", "ÜNÏ"),
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.text(max_size=12),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(st.tuples(KEYS, inner), max_size=4).map(Obj),
    ),
    max_leaves=20,
)
BODIES = st.lists(st.tuples(KEYS, VALUES), max_size=5).map(
    lambda pairs: Obj([("model", "gpt-4o"), *[(k, v) for k, v in pairs if k != "model"]])
)


def ambiguous(value: Any) -> bool:
    if isinstance(value, Obj):
        folded = [k.casefold() for k, _ in value]
        return len(set(folded)) != len(folded) or any(ambiguous(v) for _, v in value)
    if isinstance(value, list):
        return any(ambiguous(v) for v in value)
    return False


def write(value: Any, *, compact: bool, escape_keys: bool = False) -> str:
    comma, colon = (",", ":") if compact else (", ", " : ")
    if isinstance(value, Obj):
        return (
            "{"
            + comma.join(
                _key(k, escape_keys) + colon + write(v, compact=compact, escape_keys=escape_keys)
                for k, v in value
            )
            + "}"
        )
    if isinstance(value, list):
        return (
            "["
            + comma.join(write(v, compact=compact, escape_keys=escape_keys) for v in value)
            + "]"
        )
    return json.dumps(value, ensure_ascii=not compact)


def _key(key: str, escape: bool) -> str:
    if not escape:
        return json.dumps(key, ensure_ascii=False)
    return (
        '"'
        + "".join(
            f"\\u{ord(c):04x}" if c.isalpha() and ord(c) < 0x10000 else json.dumps(c)[1:-1]
            for c in key
        )
        + '"'
    )


def accepted(raw: bytes) -> bool:
    """Whether the body passed the key check (a later field check may still refuse it)."""
    try:
        OPENAI.parse("/v1/chat/completions", raw)
    except SidecarError as exc:
        assert exc.status == 400, exc.message
        return exc.code != "duplicate_key"
    return True


@settings(max_examples=400, deadline=None)
@given(BODIES)
def test_accepted_exactly_when_unambiguous_in_every_layout(body: Obj) -> None:
    expected = not ambiguous(body)
    for raw in (
        write(body, compact=True),
        write(body, compact=False),
        write(body, compact=True, escape_keys=True),
    ):
        assert accepted(raw.encode()) is expected, raw


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model":"claude-fake-1","max_tokens":8,"messages":[{"role":"user","content":"a"}],'
        b'"max_tokens":4096}',
        b'{"model":"claude-fake-1","messages":[],"metadata":{"user_id":"a","User_Id":"b"}}',
    ],
)
def test_the_anthropic_adapter_reads_bodies_the_same_way(raw: bytes) -> None:
    with pytest.raises(SidecarError) as excinfo:
        ANTHROPIC.parse("/v1/messages", raw)
    assert excinfo.value.code == "duplicate_key"


def test_bodies_nested_deeper_than_orjson_writes_are_read_by_the_exact_path() -> None:
    for depth, ok in ((300, True), (1020, False)):
        raw = b'{"model":"gpt-4o","a":' + b"[" * depth + b"]" * depth + b"}"
        try:
            OPENAI.parse("/v1/chat/completions", raw)
            assert ok, depth
        except SidecarError as exc:
            assert not ok and exc.status == 400, (depth, exc.message)
