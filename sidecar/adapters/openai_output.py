"""An OpenAI reply's texts and tool arguments, plain and streamed, for the output stage.

Apart from the adapter (`openai`), which reads requests, usage and tool names,
so that what the output guards see of an OpenAI reply, and how a redaction is
written back into it, is read in one place: chat and legacy completion chunks
carry text in `choices`, Responses streams in typed events that repeat each
text in full at the end.
"""

from __future__ import annotations

from typing import Any

from sidecar.adapters.output import TextFilter, _Base, _edited, _sse
from sidecar.call import Text
from sidecar.events import StreamEvent, ToolTexts


def openai_reply_texts(path: str, body: dict[str, Any]) -> tuple[list[Text], ToolTexts]:
    texts: list[Text] = []
    calls: ToolTexts = []
    for choice in body.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        if isinstance(choice.get("text"), str):  # /v1/completions
            texts.append(Text("assistant", choice["text"], choice, "text"))
        message = choice.get("message")
        if not isinstance(message, dict):
            continue
        if isinstance(message.get("content"), str):
            texts.append(Text("assistant", message["content"], message, "content"))
        legacy = message.get("function_call")  # the pre-tools `functions` API
        if isinstance(legacy, dict) and isinstance(legacy.get("arguments"), str):
            args = Text("tool_call", legacy["arguments"], legacy, "arguments")
            calls.append((str(legacy.get("name")), args))
        for tc in message.get("tool_calls") or ():
            fn, key = call_body(tc)
            if fn is not None and isinstance(fn.get(key), str):
                calls.append((str(fn.get("name")), Text("tool_call", fn[key], fn, key)))
    for item in body.get("output") or ():  # /v1/responses
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            for part in item.get("content") or ():
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    texts.append(Text("assistant", part["text"], part, "text"))
        elif item.get("type") == "function_call" and isinstance(item.get("arguments"), str):
            calls.append(
                (str(item.get("name")), Text("tool_call", item["arguments"], item, "arguments"))
            )
        elif item.get("type") == "custom_tool_call" and isinstance(item.get("input"), str):
            calls.append((str(item.get("name")), Text("tool_call", item["input"], item, "input")))
    return texts, calls


def call_body(tc: object) -> tuple[dict[str, Any] | None, str]:
    """A chat tool call's named part and the key of its input: a function's `arguments`
    (JSON) or a custom tool's free-form `input`."""
    if not isinstance(tc, dict):
        return None, ""
    if isinstance(tc.get("custom"), dict):
        return tc["custom"], "input"
    fn = tc.get("function")
    return (fn, "arguments") if isinstance(fn, dict) else (None, "")


def openai_scrub(body: dict[str, Any]) -> bool:
    """Drop token-by-token copies of the text (logprobs), which would carry what guards redact."""
    changed = False
    for choice in body.get("choices") or ():
        if isinstance(choice, dict) and choice.get("logprobs"):
            choice["logprobs"] = None
            changed = True
    for item in body.get("output") or ():
        for part in (item.get("content") or ()) if isinstance(item, dict) else ():
            if isinstance(part, dict) and part.get("logprobs"):
                part["logprobs"] = []
                changed = True
    return changed


class OpenAIChatEditor(_Base):
    """Chat and legacy completion chunks: `choices[i].delta.content` / `.text`, tool arguments."""

    def __init__(self, filter_: TextFilter) -> None:
        super().__init__(filter_)
        self._open: dict[int, set[str]] = {}  # choice index -> channels with held text
        self._legacy: set[int] = set()  # choices of /v1/completions, whose text is `text`
        self._tool_names: dict[str, str] = {}
        self._custom: set[str] = set()  # channels of custom tools, whose input is free text
        self._envelope: dict[str, Any] | None = None

    def _handle(self, events: list[StreamEvent]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for event in events:
            if event.data is not None and event.data.strip() == b"[DONE]":
                out += self._finish()
                out.append(event)
                continue
            chunk = event.obj
            if chunk is None or not isinstance(chunk.get("choices"), list):
                out.append(event)
                continue
            if self._envelope is None:
                self._envelope = {k: v for k, v in chunk.items() if k not in ("choices", "usage")}
            changed = False
            for choice in chunk["choices"]:
                if isinstance(choice, dict):
                    changed |= self._choice(choice)
            out.append(_edited(event) if changed else event)
        return out

    def _choice(self, choice: dict[str, Any]) -> bool:
        index = choice.get("index", 0)
        open_ = self._open.setdefault(index, set())
        changed = False
        if choice.get("logprobs"):
            # Token-by-token copies of the text would carry what the guards redact.
            choice["logprobs"] = None
            changed = True
        delta = choice.get("delta")
        if isinstance(delta, dict):
            if isinstance(delta.get("content"), str) and delta["content"]:
                channel = f"choice {index}"
                open_.add(channel)
                new = self._filter.feed(channel, delta["content"])
                changed |= new != delta["content"]
                delta["content"] = new
            for tc in delta.get("tool_calls") or ():
                changed |= self._tool_delta(index, tc, open_)
            legacy = delta.get("function_call")  # the pre-tools `functions` API
            if isinstance(legacy, dict):
                changed |= self._tool_delta(index, {"index": "fc", "function": legacy}, open_)
        if isinstance(choice.get("text"), str):  # /v1/completions
            self._legacy.add(index)
        if isinstance(choice.get("text"), str) and choice["text"]:
            channel = f"choice {index}"
            open_.add(channel)
            new = self._filter.feed(channel, choice["text"])
            changed |= new != choice["text"]
            choice["text"] = new
        if choice.get("finish_reason") is not None and open_:
            changed |= self._end_choice(index, choice)
        return changed

    def _tool_delta(self, index: int, tc: Any, open_: set[str]) -> bool:
        fn, key = call_body(tc)
        if fn is None:
            return False
        channel = f"tool call {index}:{tc.get('index', 0)}"
        if isinstance(fn.get("name"), str):
            self._tool_names[channel] = fn["name"]
        if key == "input":
            self._custom.add(channel)
        args = fn.get(key)
        open_.add(channel)
        if not isinstance(args, str) or not args:
            return False
        new = self._filter.feed(channel, args, tool=self._tool_names.get(channel, "?"))
        fn[key] = new
        return new != args

    def _end_choice(self, index: int, choice: dict[str, Any]) -> bool:
        changed = False
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            delta = {}
            if index not in self._legacy:
                choice["delta"] = delta
        for channel in sorted(self._open.pop(index, set())):
            if channel.startswith("tool call"):
                rest = self._filter.end(channel, tool=self._tool_names.get(channel, "?"))
                if rest:
                    tc_index = channel.rsplit(":", 1)[1]
                    if tc_index == "fc":
                        delta.setdefault("function_call", {})["arguments"] = rest
                    elif channel in self._custom:
                        delta.setdefault("tool_calls", []).append(
                            {"index": int(tc_index), "type": "custom", "custom": {"input": rest}}
                        )
                    else:
                        delta.setdefault("tool_calls", []).append(
                            {"index": int(tc_index), "function": {"arguments": rest}}
                        )
                    changed = True
            else:
                rest = self._filter.end(channel)
                if rest:
                    key = "text" if "text" in choice else "content"
                    if key == "text":
                        choice["text"] = choice.get("text", "") + rest
                    else:
                        delta["content"] = (delta.get("content") or "") + rest
                    changed = True
        return changed

    def _finish(self) -> list[StreamEvent]:
        """Choices that never sent a finish_reason: their rest goes out in one more chunk."""
        out: list[StreamEvent] = []
        for index in sorted(self._open):
            choice: dict[str, Any] = {"index": index, "finish_reason": None}
            if index in self._legacy:
                choice["text"] = ""
            else:
                choice["delta"] = {}
            if self._end_choice(index, choice):
                chunk = {**(self._envelope or {}), "choices": [choice]}
                out += _sse(chunk)
        self._open.clear()
        return out


# Responses items calling a tool whose input the tool guards read, and the events carrying it.
_CALL_ITEMS = frozenset({"function_call", "custom_tool_call"})
_ARGUMENT_DELTAS = frozenset(
    {"response.function_call_arguments.delta", "response.custom_tool_call_input.delta"}
)
_ARGUMENT_DONES = {  # event -> (its field with the whole input, the delta event of that input)
    "response.function_call_arguments.done": (
        "arguments",
        "response.function_call_arguments.delta",
    ),
    "response.custom_tool_call_input.done": ("input", "response.custom_tool_call_input.delta"),
}


class OpenAIResponsesEditor(_Base):
    """Responses events: text and argument deltas, and the whole texts repeated at the end.

    `*.done` events, `response.output_item.done` and `response.completed`
    repeat each text in full; they are rewritten to what was released, so the
    full copies carry the same redactions as the deltas.
    """

    def __init__(self, filter_: TextFilter) -> None:
        super().__init__(filter_)
        self._released: dict[str, list[str]] = {}
        self._tools: dict[str, str] = {}  # item id -> tool name
        self._custom: set[str] = set()  # channels of custom tools, whose input is free text
        self._open: set[str] = set()

    def _handle(self, events: list[StreamEvent]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for event in events:
            data = event.obj
            if data is None:
                out.append(event)
                continue
            out += self._event(event, data)
        return out

    @staticmethod
    def _text_channel(data: dict[str, Any]) -> str:
        return f"output {data.get('output_index', 0)}:{data.get('content_index', 0)}"

    def _event(self, event: StreamEvent, data: dict[str, Any]) -> list[StreamEvent]:
        kind = data.get("type")
        if data.get("logprobs"):
            data["logprobs"] = []  # token copies of the text; they would carry what is redacted
            event.edit()
        if kind == "response.output_item.added":
            item = data.get("item") or {}
            if item.get("type") in _CALL_ITEMS:
                channel = f"args {data.get('output_index', 0)}"
                self._tools[channel] = str(item.get("name"))
                if item.get("type") == "custom_tool_call":
                    self._custom.add(channel)
            return [event]
        if kind == "response.output_text.delta":
            return [self._delta(event, data, self._text_channel(data), None)]
        if kind in _ARGUMENT_DELTAS:
            channel = f"args {data.get('output_index', 0)}"
            return [self._delta(event, data, channel, self._tools.get(channel, "?"))]
        if kind == "response.output_text.done":
            channel = self._text_channel(data)
            pre = self._end_channel(channel, data, None, "response.output_text.delta")
            data["text"] = self._full(channel, data.get("text"), None)
            return [*pre, _edited(event)]
        if kind in _ARGUMENT_DONES:
            channel = f"args {data.get('output_index', 0)}"
            field, delta_type = _ARGUMENT_DONES[kind]
            pre = self._end_channel(channel, data, self._tools.get(channel, "?"), delta_type)
            data[field] = self._full(channel, data.get(field), self._tools.get(channel, "?"))
            return [*pre, _edited(event)]
        if kind == "response.content_part.done":
            part = data.get("part") or {}
            if isinstance(part.get("text"), str):
                part["text"] = self._full(self._text_channel(data), part["text"], None)
                return [_edited(event)]
            return [event]
        if kind == "response.output_item.done":
            self._rewrite_item(data.get("item"), data.get("output_index", 0))
            return [_edited(event)]
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            # Channels never closed by a *.done event let their held text out first,
            # so the full copies below and the deltas before them agree.
            pre = self._end_open_channels()
            response = data.get("response") or {}
            for i, item in enumerate(response.get("output") or ()):
                self._rewrite_item(item, i)
            return [*pre, _edited(event)]
        return [event]

    def _delta(
        self, event: StreamEvent, data: dict[str, Any], channel: str, tool: str | None
    ) -> StreamEvent:
        piece = data.get("delta")
        if not isinstance(piece, str) or not piece:
            return event
        self._open.add(channel)
        new = self._filter.feed(channel, piece, tool=tool)
        self._released.setdefault(channel, []).append(new)
        if new == piece:
            return event
        data["delta"] = new
        return _edited(event)

    def _end_channel(
        self, channel: str, data: dict[str, Any], tool: str | None, delta_type: str
    ) -> list[StreamEvent]:
        if channel not in self._open:
            return []
        self._open.discard(channel)
        rest = self._filter.end(channel, tool=tool)
        if not rest:
            return []
        self._released.setdefault(channel, []).append(rest)
        extra = {
            k: v
            for k, v in data.items()
            if k in ("item_id", "output_index", "content_index", "sequence_number")
        }
        return _sse({"type": delta_type, **extra, "delta": rest}, delta_type)

    def _end_open_channels(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for channel in sorted(self._open):
            kind, _, where = channel.partition(" ")
            output_index, _, content_index = where.partition(":")
            data: dict[str, Any] = {"output_index": int(output_index)}
            if kind == "args":
                tool = self._tools.get(channel, "?")
                delta_type = (
                    "response.custom_tool_call_input.delta"
                    if channel in self._custom
                    else "response.function_call_arguments.delta"
                )
                out += self._end_channel(channel, data, tool, delta_type)
            else:
                data["content_index"] = int(content_index or 0)
                out += self._end_channel(channel, data, None, "response.output_text.delta")
        return out

    def _full(self, channel: str, text: Any, tool: str | None) -> Any:
        """The whole text of a channel as released; one that came with no deltas is
        passed through the filter here, so full copies are never raw."""
        released = self._released.get(channel)
        if released is None:
            if not isinstance(text, str):
                return text
            released = [
                self._filter.feed(channel, text, tool=tool),
                self._filter.end(channel, tool=tool),
            ]
            self._released[channel] = released
        return "".join(released)

    def _rewrite_item(self, item: Any, output_index: int) -> None:
        if not isinstance(item, dict):
            return
        if item.get("type") in _CALL_ITEMS:
            channel = f"args {output_index}"
            field = "input" if item.get("type") == "custom_tool_call" else "arguments"
            item[field] = self._full(
                channel, item.get(field), self._tools.get(channel, str(item.get("name")))
            )
            return
        for j, part in enumerate(item.get("content") or ()):
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                part["text"] = self._full(f"output {output_index}:{j}", part["text"], None)
                if part.get("logprobs"):
                    part["logprobs"] = []

    def _finish(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for channel in sorted(self._open):
            tool = self._tools.get(channel) if channel.startswith("args") else None
            rest = self._filter.end(channel, tool=tool)
            if rest:
                out += _sse({"type": "response.output_text.delta", "delta": rest})
        self._open.clear()
        return out
