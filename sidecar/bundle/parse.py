"""Parse bundle documents (YAML or JSON) without letting their shape harm the process.

libyaml's composer and the JSON decoder both recurse once per nesting level:
a 60 KB YAML file nested 30,000 deep overflows the C stack and kills the
process outright, and a deep JSON file raises RecursionError from wherever it
happens to be parsed. So the nesting depth, and for YAML the size after alias
expansion ("billion laughs"), are measured by a scan that keeps its own stack
before any recursive parser sees the text. Duplicate keys are refused: a
repeated key silently winning would let one edit hide another.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    Event,
    ScalarEvent,
)
from yaml.nodes import MappingNode, Node

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"


class DocumentShapeError(ValueError):
    """The document is nested too deeply or too large, or repeats a key."""


@dataclass(frozen=True)
class ShapeLimits:
    max_depth: int
    max_nodes: int


def parse_json(data: bytes, limits: ShapeLimits) -> Any:
    """JSON with its depth checked first and duplicate members refused."""
    depth = json_depth(data)
    if depth > limits.max_depth:
        raise DocumentShapeError(f"nested {depth} levels deep; the limit is {limits.max_depth}")
    return json.loads(data, object_pairs_hook=_unique_members)


def parse_yaml(data: bytes, limits: ShapeLimits) -> Any:
    """YAML with depth and expanded size checked on the event stream, keys unique."""
    _check_yaml_shape(data, limits)
    return yaml.load(data, Loader=_UniqueKeyLoader)


# A JSON string, or an unclosed one running to the end of the text: every quote
# starts a match that succeeds, so the scan is linear whatever the input.
_JSON_STRING = re.compile(rb'"[^"\\]*+(?:\\[\s\S][^"\\]*+)*+(?:"|\\?\Z)')
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects, counting outside strings only."""
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKET)
    depth = deepest = 0
    for byte in brackets:
        depth += _STEP[byte]
        if depth > deepest:
            deepest = depth
    return deepest


# Cedar: strings and comments are skipped; then operators, keywords that build an
# expression node, and brackets are what make the parsed tree deep.
_CEDAR_TOKEN = re.compile(
    r'"[^"\\]*+(?:\\[\s\S][^"\\]*+)*+(?:"|\\?\Z)'
    r"|//[^\n]*"
    r"|&&|\|\||==|!=|<=|>=|[<>+\-*!.]"
    r"|\b(?:in|has|like|is|if|then|else)\b"
    r"|[(\[{]|[)\]}]|;"
)


def cedar_nesting(text: str) -> int:
    """An upper bound on how deep any Cedar policy in `text` parses.

    The Cedar parser and the tools over its output recurse once per level: a
    policy a thousand parentheses deep overflows the native stack, and a chain
    of a few hundred `&&` exhausts Python's recursion limit when the policy's
    JSON form is read. Within one bracket group a chain of n operators is at
    most n levels deep, so a group's height is its operator count plus its
    tallest inner group, plus one: exact for chains, small for balanced trees.
    """
    tallest = 0
    groups: list[list[int]] = [[0, 0]]  # per open group: [operators, tallest inner group]
    for match in _CEDAR_TOKEN.finditer(text):
        token = match.group()
        first = token[0]
        if first == '"' or token.startswith("//"):
            continue
        if first in "([{":
            groups.append([0, 0])
        elif first in ")]}":
            if len(groups) > 1:
                ops, inner = groups.pop()
                height = ops + inner + 1
                groups[-1][1] = max(groups[-1][1], height)
                tallest = max(tallest, len(groups) + height)
        elif first == ";":
            ops, inner = groups[0]
            tallest = max(tallest, ops + inner + 1)
            groups = [[0, 0]]
        else:
            groups[-1][0] += 1
    for ops, inner in groups:
        tallest = max(tallest, ops + inner + 1)
    return tallest + len(groups) - 1


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise DocumentShapeError(f"duplicate key {json.dumps(key)}")
        obj[key] = value
    return obj


def _check_yaml_shape(data: bytes, limits: ShapeLimits) -> None:
    """Walk the parser's events (libyaml's parser keeps an explicit stack, no recursion).

    Each open collection is a frame [anchor, nodes before it, tallest child].
    An alias counts as the whole subtree it names, both in size and in height,
    so a small document cannot expand into a huge or deep one.
    """
    loader = _Loader(data)
    subtrees: dict[str, tuple[int, int]] = {}  # anchor -> (nodes, height)
    frames: list[list[Any]] = []
    nodes = 0
    try:
        while loader.check_event():
            event: Any = loader.get_event()  # type: ignore[no-untyped-call]
            height = 0
            if isinstance(event, CollectionStartEvent):
                nodes += 1
                frames.append([event.anchor, nodes, 0])
                if len(frames) > limits.max_depth:
                    raise DocumentShapeError(
                        f"nested more than {limits.max_depth} levels deep (line {_line(event)})"
                    )
            elif isinstance(event, CollectionEndEvent):
                anchor, before, tallest = frames.pop()
                height = tallest + 1
                if anchor is not None:
                    subtrees[anchor] = (nodes - before + 1, height)
            elif isinstance(event, ScalarEvent):
                nodes += 1
                height = 1
                if event.anchor is not None:
                    subtrees[event.anchor] = (1, 1)
            elif isinstance(event, AliasEvent):
                size, height = subtrees.get(event.anchor or "", (1, 1))
                nodes += size
                if len(frames) + height > limits.max_depth:
                    raise DocumentShapeError(
                        f"alias *{event.anchor} nests more than {limits.max_depth} levels deep "
                        f"(line {_line(event)})"
                    )
            if height and frames and height > frames[-1][2]:
                frames[-1][2] = height
            if nodes > limits.max_nodes:
                raise DocumentShapeError(
                    f"more than {limits.max_nodes} values once aliases are expanded"
                )
    finally:
        loader.dispose()


class _UniqueKeyLoader(_Loader):  # type: ignore[misc,valid-type]
    """The safe loader, refusing a mapping that names the same key twice.

    Keys brought in by a merge (`<<: *base`) may be overridden: that is what a
    merge is for. Keys written out in one mapping may not repeat.
    """

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _value in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # unhashable: the base constructor reports it
                if first is not None:
                    raise DocumentShapeError(
                        f"duplicate key {key!r} at line {_line(key_node)} (first at line {first})"
                    )
                seen[key] = _line(key_node)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def _line(node_or_event: Node | Event) -> int:
    mark = node_or_event.start_mark
    return mark.line + 1 if mark is not None else 0
