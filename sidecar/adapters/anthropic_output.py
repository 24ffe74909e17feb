"""An Anthropic reply's texts and tool inputs, plain and streamed, for the output stage.

Apart from the adapter (`anthropic`) for the same reason as `openai_output`.
Anthropic sends a tool's input as a JSON object, not a string, so a redaction
of it goes through `_JsonSlot`, which keeps the rewritten input valid JSON.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from typing import Any

import orjson

from sidecar.adapters.output import Edit, TextFilter, _Base, _edited, _sse
from sidecar.call import Text
from sidecar.events import StreamEvent, ToolTexts


class _JsonSlot:
    """A place for tool arguments the provider sends as a JSON object, not a string."""

    __slots__ = ("_holder", "_key")

    def __init__(self, holder: dict[str, Any], key: str) -> None:
        self._holder, self._key = holder, key

    def __getitem__(self, key: str) -> str:
        return orjson.dumps(self._holder[self._key]).decode()

    def __setitem__(self, key: str, value: str) -> None:
        try:
            self._holder[self._key] = orjson.loads(value)
        except orjson.JSONDecodeError:
            self._holder[self._key] = value

    @staticmethod
    def prepare_edits(text: str, edits: list[Edit]) -> tuple[str, list[Edit]]:
        """Quote each JSON number an edit falls in, so its replacement stays valid JSON.

        A card given as a number (`"card": 4111...`) would otherwise come back as
        `"card": [CREDIT_CARD]` — not JSON — and the agent would get text where it
        expects an object. Offsets move with the inserted quotes.
        """
        numbers = [
            (m.start(), m.end()) for m in _JSON_TOKEN.finditer(text) if text[m.start()] != '"'
        ]
        touched = [(a, b) for a, b in numbers if any(f.start < b and f.end > a for f, _ in edits)]
        if not touched:
            return text, edits
        opens = [a for a, _ in touched]
        closes = [b for _, b in touched]

        def moved(pos: int) -> int:
            return pos + bisect.bisect_right(opens, pos) + bisect.bisect_left(closes, pos)

        out: list[str] = []
        last = 0
        for a, b in touched:
            out += [text[last:a], '"', text[a:b], '"']
            last = b
        out.append(text[last:])
        shifted = [
            (dataclasses.replace(f, start=moved(f.start), end=moved(f.end)), op) for f, op in edits
        ]
        return "".join(out), shifted


# A JSON string or number token; numbers are what is left outside strings.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?')


def anthropic_reply_texts(body: dict[str, Any]) -> tuple[list[Text], ToolTexts]:
    texts: list[Text] = []
    calls: ToolTexts = []
    for block in body.get("content") or ():
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(Text("assistant", block["text"], block, "text"))
        elif block.get("type") == "tool_use" and isinstance(block.get("input"), dict):
            slot = _JsonSlot(block, "input")
            calls.append((str(block.get("name")), Text("tool_call", slot["input"], slot, "input")))
    return texts, calls


class AnthropicEditor(_Base):
    """Messages streams: `content_block_delta` text and `input_json_delta` per block index."""

    def __init__(self, filter_: TextFilter) -> None:
        super().__init__(filter_)
        self._blocks: dict[int, tuple[str, str | None]] = {}  # index -> (kind, tool name)

    def _handle(self, events: list[StreamEvent]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for event in events:
            kind = event.name
            if kind not in ("content_block_start", "content_block_delta", "content_block_stop"):
                out.append(event)
                continue
            data = event.obj
            if data is None:
                out.append(event)
                continue
            index = data.get("index", 0)
            if kind == "content_block_start":
                block = data.get("content_block") or {}
                if block.get("type") == "tool_use":
                    self._blocks[index] = ("tool", str(block.get("name")))
                elif block.get("type") == "text":
                    self._blocks[index] = ("text", None)
                out.append(event)
            elif kind == "content_block_delta":
                out.append(self._delta(event, data, index))
            else:
                out += self._stop(index)
                out.append(event)
        return out

    def _channel(self, index: int) -> tuple[str, str | None]:
        kind, tool = self._blocks.get(index, ("text", None))
        return (f"tool call {index}" if kind == "tool" else f"block {index}"), tool

    def _delta(self, event: StreamEvent, data: dict[str, Any], index: int) -> StreamEvent:
        delta = data.get("delta") or {}
        field = {"text_delta": "text", "input_json_delta": "partial_json"}.get(
            str(delta.get("type"))
        )
        if field is None or not isinstance(delta.get(field), str):
            return event
        channel, tool = self._channel(index)
        self._blocks.setdefault(index, ("text", None))
        new = self._filter.feed(channel, delta[field], tool=tool)
        if new == delta[field]:
            return event
        delta[field] = new
        return _edited(event)

    def _stop(self, index: int) -> list[StreamEvent]:
        if index not in self._blocks:
            return []
        channel, tool = self._channel(index)
        kind = self._blocks.pop(index)[0]
        rest = self._filter.end(channel, tool=tool)
        if not rest:
            return []
        delta_type, field = (
            ("input_json_delta", "partial_json")
            if kind == "tool"
            else (
                "text_delta",
                "text",
            )
        )
        return _sse(
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": delta_type, field: rest},
            },
            "content_block_delta",
        )

    def _finish(self) -> list[StreamEvent]:
        return [e for index in sorted(self._blocks) for e in self._stop(index)]
