"""An in-process fake provider that speaks OpenAI and Anthropic, streaming included.

It answers with the text of the caller's last user message, so a first-run
user (and later the output guards) can see exactly what passed through, and
it reports realistic `usage` so budgets and metrics have numbers to work on.

When the request offers tools and the last user message reads
`call TOOL {"json": "arguments"}`, it proposes that tool call instead (chat
completions and Anthropic messages), so tool governance and tool guards can
be tried without a real model.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import struct
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import orjson
from multidict import CIMultiDict

from sidecar.adapters import anthropic as anthropic_adapter
from sidecar.adapters import openai as openai_adapter
from sidecar.bundle.snapshot import UpstreamSpec
from sidecar.call import Text
from sidecar.errors import ErrorKind, SidecarError
from sidecar.upstream.h1_errors import DeadlineExceeded

_JSON = {"content-type": "application/json"}
_SSE = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
EMBEDDING_DIMENSIONS = 16


class MockResponse:
    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes = b"",
        events: list[bytes] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.status = status
        self.headers = headers
        self._body = body
        self._events = events
        self._delay = delay
        self.deadline: float | None = None  # loop time; a stream past it fails like a real one

    async def read(self) -> bytes:
        if self._events is not None:
            return b"".join(self._events)
        return self._body

    async def chunks(self) -> AsyncIterator[bytes]:
        if self._events is None:
            yield self._body
            return
        loop = asyncio.get_running_loop()
        for i, event in enumerate(self._events):
            if i and self._delay:
                await asyncio.sleep(self._delay)
            if self.deadline is not None and loop.time() >= self.deadline:
                raise DeadlineExceeded("the call's deadline passed before the upstream ended")
            yield event

    def release(self) -> None:
        return None

    def close(self) -> None:
        self._events = []


class MockTransport:
    def __init__(self, spec: UpstreamSpec) -> None:
        self.spec = spec

    async def close(self) -> None:
        return None

    async def send(
        self,
        method: str,
        path: str,
        headers: CIMultiDict[str],
        body: bytes,
        *,
        query: str = "",
        connect_timeout: float | None = None,
        first_byte_timeout: float | None = None,
        idle_timeout: float | None = None,
        deadline: float | None = None,
    ) -> MockResponse:
        try:
            req: dict[str, Any] = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            req = {}
        handler = _HANDLERS.get(path)
        if handler is None:
            err = SidecarError(ErrorKind.NOT_FOUND, f"the mock upstream does not serve {path}")
            adapter = (
                anthropic_adapter.ADAPTER
                if path.startswith("/v1/messages")
                else openai_adapter.ADAPTER
            )
            return MockResponse(404, _JSON, adapter.error_body(err))
        response = handler(req, self.spec.chunk_delay)
        response.deadline = deadline
        return response


# --- helpers -----------------------------------------------------------------------------


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4)) if text else 0


def _last_user_text(texts: list[Text]) -> str:
    for text in reversed(texts):
        if text.channel in ("user", "prompt"):
            return text.text
    return ""


def _reply_for(texts: list[Text]) -> str:
    return _last_user_text(texts) or "(mock) there was no user message to echo"


def _pieces(text: str) -> Iterator[str]:
    """Split like a tokenizer would roughly: a word and its following space per chunk."""
    start: int = 0
    for i, ch in enumerate(text):
        if ch == " " and i > start:
            yield text[start : i + 1]
            start = i + 1
    if start < len(text):
        yield text[start:]


def _tool_call(req: dict[str, Any], texts: list[Text]) -> tuple[str, str] | None:
    """(name, arguments) when the caller asked the mock to propose a tool call."""
    if not req.get("tools"):
        return None
    words = _last_user_text(texts).strip().split(" ", 2)
    if len(words) < 2 or words[0] != "call":
        return None
    return words[1], words[2] if len(words) > 2 else "{}"


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


def _model(req: dict[str, Any]) -> str:
    model = req.get("model")
    return model if isinstance(model, str) else "mock-echo"


def _prompt_tokens(texts: list[Text], messages: int) -> int:
    return sum(_tokens(t.text) for t in texts) + 3 * messages + 3


# --- OpenAI ------------------------------------------------------------------------------


def _chat(req: dict[str, Any], delay: float) -> MockResponse:
    texts = openai_adapter.chat_texts(req)
    reply = _reply_for(texts)
    model, created, rid = _model(req), int(time.time()), f"chatcmpl-mock{uuid.uuid4().hex[:20]}"
    n_messages = len(req.get("messages") or [])
    usage = {
        "prompt_tokens": _prompt_tokens(texts, n_messages),
        "completion_tokens": _tokens(reply),
    }
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    tool = _tool_call(req, texts)
    call_id = f"call_mock{uuid.uuid4().hex[:16]}"
    if not req.get("stream"):
        message: dict[str, Any] = {"role": "assistant", "content": reply, "refusal": None}
        if tool is not None:
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": tool[0], "arguments": tool[1]},
                }
            ]
        body = {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "stop" if tool is None else "tool_calls",
                }
            ],
            "usage": usage,
            "system_fingerprint": "fp_mock",
        }
        return MockResponse(200, _JSON, orjson.dumps(body))
    include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
    base = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model}

    def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**base, "choices": [choice], **({"usage": None} if include_usage else {})})

    events = [chunk({"role": "assistant", "content": ""}, None)]
    if tool is None:
        events += [chunk({"content": piece}, None) for piece in _pieces(reply)]
        events.append(chunk({}, "stop"))
    else:
        head = {"index": 0, "id": call_id, "type": "function"}
        events.append(
            chunk({"tool_calls": [{**head, "function": {"name": tool[0], "arguments": ""}}]}, None)
        )
        events += [
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, None)
            for piece in _pieces(tool[1])
        ]
        events.append(chunk({}, "tool_calls"))
    if include_usage:
        events.append(_sse({**base, "choices": [], "usage": usage}))
    events.append(b"data: [DONE]\n\n")
    return MockResponse(200, _SSE, events=events, delay=delay)


def _completion(req: dict[str, Any], delay: float) -> MockResponse:
    texts = openai_adapter.prompt_texts(req)
    reply = _reply_for(texts)
    model, created, rid = _model(req), int(time.time()), f"cmpl-mock{uuid.uuid4().hex[:20]}"
    usage = {"prompt_tokens": _prompt_tokens(texts, 0), "completion_tokens": _tokens(reply)}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    base = {"id": rid, "object": "text_completion", "created": created, "model": model}
    if not req.get("stream"):
        choice = {"index": 0, "text": reply, "logprobs": None, "finish_reason": "stop"}
        return MockResponse(200, _JSON, orjson.dumps({**base, "choices": [choice], "usage": usage}))
    events = [
        _sse(
            {**base, "choices": [{"index": 0, "text": p, "logprobs": None, "finish_reason": None}]}
        )
        for p in _pieces(reply)
    ]
    events.append(
        _sse(
            {
                **base,
                "choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"}],
            }
        )
    )
    if (req.get("stream_options") or {}).get("include_usage"):
        events.append(_sse({**base, "choices": [], "usage": usage}))
    events.append(b"data: [DONE]\n\n")
    return MockResponse(200, _SSE, events=events, delay=delay)


def _embedding(text: str) -> list[float]:
    """A deterministic unit vector per text, so equal inputs embed equally."""
    digest = hashlib.sha256(text.encode()).digest() * 2
    raw = struct.unpack(f"<{EMBEDDING_DIMENSIONS}h", digest[: 2 * EMBEDDING_DIMENSIONS])
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [v / norm for v in raw]


def _embeddings(req: dict[str, Any], delay: float) -> MockResponse:
    texts = [t.text for t in openai_adapter.prompt_texts(req)]
    data = [
        {"object": "embedding", "index": i, "embedding": _embedding(t)} for i, t in enumerate(texts)
    ]
    tokens = sum(_tokens(t) for t in texts)
    body = {
        "object": "list",
        "data": data,
        "model": _model(req),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return MockResponse(200, _JSON, orjson.dumps(body))


def _responses(req: dict[str, Any], delay: float) -> MockResponse:
    texts = openai_adapter.responses_texts(req)
    reply = _reply_for(texts)
    model, created = _model(req), int(time.time())
    rid, mid = f"resp_mock{uuid.uuid4().hex[:24]}", f"msg_mock{uuid.uuid4().hex[:24]}"
    inp, out = _prompt_tokens(texts, 1), _tokens(reply)
    usage = {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": inp + out,
    }
    part = {"type": "output_text", "text": reply, "annotations": []}
    message = {
        "id": mid,
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [part],
    }

    def response(status: str, output: list[Any], usage_: Any) -> dict[str, Any]:
        return {
            "id": rid,
            "object": "response",
            "created_at": created,
            "status": status,
            "model": model,
            "output": output,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": usage_,
            "error": None,
            "incomplete_details": None,
            "instructions": req.get("instructions"),
            "metadata": {},
            "temperature": 1.0,
            "top_p": 1.0,
            "text": {"format": {"type": "text"}},
        }

    if not req.get("stream"):
        return MockResponse(200, _JSON, orjson.dumps(response("completed", [message], usage)))
    seq = 0
    events: list[bytes] = []

    def emit(kind: str, payload: dict[str, Any]) -> None:
        nonlocal seq
        events.append(_sse({"type": kind, "sequence_number": seq, **payload}, kind))
        seq += 1

    emit("response.created", {"response": response("in_progress", [], None)})
    emit("response.in_progress", {"response": response("in_progress", [], None)})
    in_progress = {**message, "status": "in_progress", "content": []}
    emit("response.output_item.added", {"output_index": 0, "item": in_progress})
    where = {"item_id": mid, "output_index": 0, "content_index": 0}
    emit("response.content_part.added", {**where, "part": {**part, "text": ""}})
    for piece in _pieces(reply):
        emit("response.output_text.delta", {**where, "delta": piece, "logprobs": []})
    emit("response.output_text.done", {**where, "text": reply, "logprobs": []})
    emit("response.content_part.done", {**where, "part": part})
    emit("response.output_item.done", {"output_index": 0, "item": message})
    emit("response.completed", {"response": response("completed", [message], usage)})
    return MockResponse(200, _SSE, events=events, delay=delay)


# --- Anthropic ---------------------------------------------------------------------------


def _messages(req: dict[str, Any], delay: float) -> MockResponse:
    texts = anthropic_adapter.message_texts(req)
    reply = _reply_for(texts)
    model, mid = _model(req), f"msg_mock{uuid.uuid4().hex[:24]}"
    inp, out = _prompt_tokens(texts, len(req.get("messages") or [])), _tokens(reply)
    tool = _tool_call(req, texts)
    tool_input: Any = None
    if tool is not None:
        try:
            tool_input = orjson.loads(tool[1])
        except orjson.JSONDecodeError:
            tool_input = {"input": tool[1]}
    tool_id = f"toolu_mock{uuid.uuid4().hex[:16]}"
    if not req.get("stream"):
        content: list[dict[str, Any]] = [{"type": "text", "text": reply}]
        if tool is not None:
            content = [{"type": "tool_use", "id": tool_id, "name": tool[0], "input": tool_input}]
        body = {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": "end_turn" if tool is None else "tool_use",
            "stop_sequence": None,
            "usage": {"input_tokens": inp, "output_tokens": out},
        }
        return MockResponse(200, _JSON, orjson.dumps(body))
    start: dict[str, Any] = {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": inp, "output_tokens": 1},
    }
    block: dict[str, Any] = {"type": "text", "text": ""}
    if tool is not None:
        block = {"type": "tool_use", "id": tool_id, "name": tool[0], "input": {}}
    events = [
        _sse({"type": "message_start", "message": start}, "message_start"),
        _sse(
            {"type": "content_block_start", "index": 0, "content_block": block},
            "content_block_start",
        ),
        _sse({"type": "ping"}, "ping"),
    ]
    if tool is None:
        deltas = [{"type": "text_delta", "text": p} for p in _pieces(reply)]
    else:
        arguments = orjson.dumps(tool_input).decode()
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in _pieces(arguments)]
    events += [
        _sse({"type": "content_block_delta", "index": 0, "delta": d}, "content_block_delta")
        for d in deltas
    ]
    events += [
        _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        _sse(
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": "end_turn" if tool is None else "tool_use",
                    "stop_sequence": None,
                },
                "usage": {"output_tokens": out},
            },
            "message_delta",
        ),
        _sse({"type": "message_stop"}, "message_stop"),
    ]
    return MockResponse(200, _SSE, events=events, delay=delay)


def _count_tokens(req: dict[str, Any], delay: float) -> MockResponse:
    texts = anthropic_adapter.message_texts(req)
    tokens = _prompt_tokens(texts, len(req.get("messages") or []))
    return MockResponse(200, _JSON, orjson.dumps({"input_tokens": tokens}))


_HANDLERS = {
    "/v1/chat/completions": _chat,
    "/v1/completions": _completion,
    "/v1/embeddings": _embeddings,
    "/v1/responses": _responses,
    "/v1/messages": _messages,
    "/v1/messages/count_tokens": _count_tokens,
}
