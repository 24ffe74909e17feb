"""Find names in Cedar policies that could never match, because Cedar sees names folded.

The sidecar hands Cedar every model and tool name in folded form (see
`sidecar.names`), so `resource.name like "GPT-4o*"` or `Sidecar::Model::"GPT-4o"`
would silently match nothing — and a `forbid` written that way would forbid
nothing. Such a literal is a load error naming the spelling to write instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sidecar.names import fold

_NAMED_TYPES = ("Sidecar::Model", "Sidecar::Tool")
_COMPARISONS = ("==", "!=", "like", "contains", "containsAll", "containsAny")
_NAMES_READ = (
    {".": {"left": {"Var": "resource"}, "attr": "name"}},
    {".": {"left": {"Var": "context"}, "attr": "tools"}},
)


def unfolded_names(policy: dict[str, Any]) -> list[str]:
    """Name literals of one policy (its JSON form) that differ from their folded form."""
    found = _entity_ids(policy.get("resource"))
    for condition in policy.get("conditions") or ():
        found += _in_expression(condition.get("body"))
    return [name for i, name in enumerate(found) if found.index(name) == i]


def _in_expression(node: Any) -> list[str]:
    found = _entity_ids(node)
    for op, operands in _walk(node):
        if op not in _COMPARISONS or not isinstance(operands, dict):
            continue
        sides = [operands.get("left"), operands.get("right")]
        if op == "like":
            sides[1] = _like_text(operands.get("pattern") or [])
        if any(_reads_names(side) for side in sides):
            found += [s for s in _strings(sides) if s != fold(s)]
    return found


def _like_text(pattern: list[Any]) -> str:
    """A `like` pattern as written: `*` for a wildcard, `\\*` for a literal star."""
    return "".join(
        "*" if part == "Wildcard" else str(part.get("Literal", "")).replace("*", "\\*")
        for part in pattern
    )


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _reads_names(node: Any) -> bool:
    if node in _NAMES_READ:
        return True
    if isinstance(node, dict):
        return any(_reads_names(v) for v in node.values())
    if isinstance(node, list):
        return any(_reads_names(v) for v in node)
    return False


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        value = node.get("Value")
        if isinstance(value, str):
            yield value
        for key, child in node.items():
            if key not in ("Value", "Var", "attr", "__entity"):
                yield from _strings(child)
        if isinstance(value, (list, dict)):
            yield from _strings(value)
    elif isinstance(node, list):
        for child in node:
            yield from _strings(child)


def _entity_ids(node: Any) -> list[str]:
    """Ids of Model and Tool entities named anywhere in a scope or an expression."""
    found: list[str] = []
    if isinstance(node, dict):
        kind, ident = node.get("type"), node.get("id")
        if kind in _NAMED_TYPES and isinstance(ident, str) and ident != fold(ident):
            found.append(ident)
        for child in node.values():
            found += _entity_ids(child)
    elif isinstance(node, list):
        for child in node:
            found += _entity_ids(child)
    return found
