"""Parse a request body so that every JSON reader would read the same object.

The sidecar authorizes and guards the object orjson builds, then forwards the
original bytes. JSON readers disagree on an object with a repeated key (orjson
and Python keep the last, Go's `encoding/json` and some others the first, and
Go also matches field names without regard to case), so a body such as
`{"model": "gpt-4o-mini", "Model": "gpt-4o"}` could be allowed as one model and
run as another. Such bodies are refused, anywhere in the tree.

orjson has no duplicate-key hook, so clean bodies are checked without a second
parse: when the body is byte for byte what orjson writes for the parsed object
(what the OpenAI and Anthropic SDKs send: compact JSON, UTF-8 unescaped), the
body cannot hold a repeated key, because the parsed object has none. Any other
body takes the exact path, the standard library's decoder with a hook that
sees every key. The check can only be wrong towards the exact path. Keys that
differ only in case are found by one walk over the parsed objects.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from sidecar.errors import ErrorKind, SidecarError

DUPLICATE_KEY = "duplicate_key"


class _Repeated(Exception):
    """An object repeats a key; raised from inside the decoder to stop it early."""


def load_object(raw: bytes) -> dict[str, Any]:
    """Parse a request body that must be one JSON object whose keys are unambiguous."""
    if not raw:
        raise SidecarError(ErrorKind.INVALID_REQUEST, "request body is empty; expected JSON")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SidecarError(
            ErrorKind.INVALID_REQUEST, f"request body is not valid JSON: {exc}"
        ) from None
    if not isinstance(body, dict):
        raise SidecarError(
            ErrorKind.INVALID_REQUEST,
            f"request body must be a JSON object, not {type(body).__name__}",
        )
    if not _case_distinct(body):
        _refuse(raw)
    if not _canonical(body, raw) and not _exactly_unique(raw):
        _refuse(raw)
    return body


def _canonical(body: dict[str, Any], raw: bytes) -> bool:
    """True if `raw` is exactly orjson's serialization of what it parsed to."""
    try:
        return orjson.dumps(body) == raw
    except orjson.JSONEncodeError:  # nested deeper than orjson writes; the exact path reads it
        return False


def _case_distinct(root: dict[str, Any]) -> bool:
    """True if no object in the tree has two keys that differ only in case."""
    stack: list[Any] = [root]
    pop, push = stack.pop, stack.append
    while stack:
        node = pop()
        if type(node) is dict:
            if len(node) > 1:
                joined = "\0".join(node)
                # All-ASCII keys without capitals cannot collide; others are folded.
                if not (joined.isascii() and joined.islower()) and len(
                    {key.casefold() for key in node}
                ) != len(node):
                    return False
            for value in node.values():
                kind = type(value)
                if kind is dict or kind is list:
                    push(value)
        else:
            for value in node:
                kind = type(value)
                if kind is dict or kind is list:
                    push(value)
    return True


def _exactly_unique(raw: bytes) -> bool:
    """The exact path: does any object in the body repeat a key? Raises nothing."""
    try:
        json.loads(raw, object_pairs_hook=_strict_object)
    except (_Repeated, RecursionError, ValueError):
        return False  # _refuse says which
    return True


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Repeated
    return obj


def _refuse(raw: bytes) -> None:
    """Raise the error that names where the first ambiguous key is (the slow path)."""
    try:
        found = _find_ambiguous(json.loads(raw, object_pairs_hook=_Pairs), "")
    except RecursionError:
        raise SidecarError(
            ErrorKind.INVALID_REQUEST, "request body is nested too deeply to be checked"
        ) from None
    except ValueError as exc:  # what orjson took but the standard decoder does not
        raise SidecarError(
            ErrorKind.INVALID_REQUEST, f"request body is not valid JSON: {exc}"
        ) from None
    where, key, other = found or ("", "?", "?")
    place = f"in '{where}'" if where else "at the top level"
    if key == other:
        what = f"key '{key}' appears twice {place}"
    else:
        what = f"keys '{other}' and '{key}' differ only in case {place}"
    raise SidecarError(
        ErrorKind.INVALID_REQUEST,
        f"request body is ambiguous: {what}; JSON readers disagree on which one counts, "
        "so each key may appear once per object, in one spelling",
        code=DUPLICATE_KEY,
        param=f"{where}.{key}" if where else key,
    )


class _Pairs(list[tuple[str, Any]]):
    """An object kept as its key-value pairs, repeats included."""


def _find_ambiguous(node: Any, path: str) -> tuple[str, str, str] | None:
    """(path, key, the key it collides with) of the first ambiguous key, depth first."""
    if isinstance(node, _Pairs):
        seen: dict[str, str] = {}
        for key, _ in node:
            folded = key.casefold()
            if folded in seen:
                return (path, key, seen[folded])
            seen[folded] = key
        for key, value in node:
            found = _find_ambiguous(value, f"{path}.{key}" if path else key)
            if found:
                return found
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found = _find_ambiguous(value, f"{path}[{i}]")
            if found:
                return found
    return None
