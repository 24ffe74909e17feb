"""Tool governance through the real SDKs, against an upstream whose model proposes tool calls."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from aiohttp import web

from integration.conftest import MakeSidecar, Running


class ToolProposer:
    """A real aiohttp upstream whose 'model' always proposes calling `self.tool`."""

    def __init__(self) -> None:
        self.tool = "search"
        # How the stream's lines end ("\n" lines and a "\r\n" blank line is "\n", "\r\n").
        self.line_end, self.blank_line = "\n", "\n"
        self.bodies: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_post("/v1/messages", self._messages)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _sse(
        self, request: web.Request, events: list[tuple[str | None, Any]]
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        for name, data in events:
            end = self.line_end
            head = f"event: {name}{end}" if name else ""
            payload = data if isinstance(data, str) else json.dumps(data)
            await resp.write(f"{head}data: {payload}{end}{self.blank_line}".encode())
        await resp.write_eof()
        return resp

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
        call = {
            "id": "call_1",
            "type": "function",
            "function": {"name": self.tool, "arguments": "{}"},
        }
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "c1",
                    "object": "chat.completion",
                    "created": 1,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                            "finish_reason": "tool_calls",
                        }
                    ],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
                }
            )

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        first = {
            "index": 0,
            "id": "call_1",
            "type": "function",
            "function": {"name": self.tool, "arguments": ""},
        }
        return await self._sse(
            request,
            [
                (None, chunk({"role": "assistant", "content": "Let me look. "})),
                (None, chunk({"tool_calls": [first]})),
                (None, chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]})),
                (None, chunk({}, "tool_calls")),
                (None, "[DONE]"),
            ],
        )

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        item = {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_1",
            "name": self.tool,
            "arguments": "{}",
            "status": "completed",
        }
        response = {
            "id": "resp_1",
            "object": "response",
            "created_at": 1,
            "status": "completed",
            "model": body["model"],
            "output": [item],
            "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2},
        }
        if not body.get("stream"):
            return web.json_response(response)
        return await self._sse(
            request,
            [
                (
                    "response.created",
                    {
                        "type": "response.created",
                        "sequence_number": 0,
                        "response": {**response, "status": "in_progress", "output": []},
                    },
                ),
                (
                    "response.output_item.added",
                    {
                        "type": "response.output_item.added",
                        "sequence_number": 1,
                        "output_index": 0,
                        "item": item,
                    },
                ),
                (
                    "response.completed",
                    {"type": "response.completed", "sequence_number": 2, "response": response},
                ),
            ],
        )

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        block = {"type": "tool_use", "id": "tu_1", "name": self.tool, "input": {}}
        message = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [block],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {"input_tokens": 3, "output_tokens": 3},
        }
        if not body.get("stream"):
            return web.json_response(message)
        return await self._sse(
            request,
            [
                (
                    "message_start",
                    {
                        "type": "message_start",
                        "message": {**message, "content": [], "stop_reason": None},
                    },
                ),
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {**block, "input": {}},
                    },
                ),
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "input_json_delta", "partial_json": "{}"},
                    },
                ),
                ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                (
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": "tool_use"},
                        "usage": {"output_tokens": 3},
                    },
                ),
                ("message_stop", {"type": "message_stop"}),
            ],
        )


def bundle(upstream: ToolProposer, request_mode: str = "remove") -> dict[str, Any]:
    return {
        "apiVersion": "sidecar/v1",
        "revision": "tools-1",
        "identity": {"pod": {"roles": ["analyst"]}},
        "upstreams": {
            "oai": {"base_url": upstream.url},
            "ant": {"provider": "anthropic", "base_url": upstream.url},
        },
        "routes": [
            {"match": {"model": "gpt-*"}, "upstream": "oai"},
            {"match": {"model": "claude-*"}, "upstream": "ant"},
        ],
        "roles": {
            "analyst": [
                {"actions": ["llm.*"]},
                {"actions": ["tool.call"], "tools": ["search", "calc*"]},
            ]
        },
        "tool_policy": {"request": request_mode},
    }


TOOLS: Any = [
    {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "shell", "parameters": {"type": "object"}}},
]
MESSAGES: Any = [{"role": "user", "content": "find it"}]
RESPONSES_TOOLS: Any = [{"type": "function", "name": "search", "parameters": {}}]
ANTHROPIC_TOOLS: Any = [{"name": "search", "input_schema": {"type": "object"}}]


@pytest.fixture
async def proposer() -> AsyncIterator[ToolProposer]:
    upstream = ToolProposer()
    await upstream.start()
    yield upstream
    await upstream.stop()


async def start(make_sidecar: MakeSidecar, upstream: ToolProposer, mode: str = "remove") -> Running:
    return await make_sidecar(bundle(upstream, mode))


async def test_forbidden_tools_are_removed_from_the_request(
    proposer: ToolProposer, make_sidecar: MakeSidecar
) -> None:
    sc = await start(make_sidecar, proposer)
    client = openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key="x", max_retries=0)
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=MESSAGES, tools=TOOLS
    )
    completion = raw.parse()
    tool_calls = completion.choices[0].message.tool_calls
    assert tool_calls is not None and tool_calls[0].type == "function"
    assert tool_calls[0].function.name == "search"
    assert raw.headers["x-sidecar-tools-removed"] == "shell"
    assert [t["function"]["name"] for t in proposer.bodies[-1]["tools"]] == ["search"]
    assert proposer.bodies[-1]["messages"] == MESSAGES  # the rest of the body is untouched


async def test_deny_mode_refuses_the_call(
    proposer: ToolProposer, make_sidecar: MakeSidecar
) -> None:
    sc = await start(make_sidecar, proposer, "deny")
    client = openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as info:
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=TOOLS)
    assert "offers tools 'shell'" in info.value.message and info.value.code == "tool_forbidden"
    assert proposer.bodies == []


async def test_forbidden_tool_call_in_a_plain_response_is_blocked(
    proposer: ToolProposer, make_sidecar: MakeSidecar
) -> None:
    sc = await start(make_sidecar, proposer)
    proposer.tool = "shell"  # the model goes off the list it was given
    client = openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as info:
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=TOOLS[:1])
    assert "proposed a call to tool 'shell'" in info.value.message
    assert info.value.code == "tool_call_blocked"
    with pytest.raises(openai.PermissionDeniedError):
        await client.responses.create(
            model="gpt-4o",
            input="x",
            tools=RESPONSES_TOOLS,
        )
    aclient = anthropic.AsyncAnthropic(base_url=sc.base, api_key="x", max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as ainfo:
        await aclient.messages.create(
            model="claude-x",
            max_tokens=10,
            messages=MESSAGES,
            tools=ANTHROPIC_TOOLS,
        )
    assert "tool 'shell'" in str(ainfo.value)
    proposer.tool = "calculator"  # matches the role's "calc*"
    reply = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=TOOLS[:1])
    assert reply.choices[0].finish_reason == "tool_calls"


async def test_forbidden_tool_call_in_a_stream_is_blocked_before_it_is_sent(
    proposer: ToolProposer, make_sidecar: MakeSidecar
) -> None:
    sc = await start(make_sidecar, proposer)
    proposer.tool = "shell"
    client = openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key="x", max_retries=0)
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, tools=TOOLS[:1], stream=True
    )
    seen: list[str] = []
    with pytest.raises(openai.APIError) as info:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                seen.append(chunk.choices[0].delta.content)
            assert not (chunk.choices and chunk.choices[0].delta.tool_calls)
    assert "proposed a call to tool 'shell'" in str(info.value)
    # raw bytes: the tool-call event itself never reached the agent
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{sc.base}/v1/chat/completions",
            json={"model": "gpt-4o", "messages": MESSAGES, "tools": TOOLS[:1], "stream": True},
        ) as resp,
    ):
        raw = await resp.read()
    assert b'"tool_calls"' not in raw and b"tool_call_blocked" in raw

    with pytest.raises(openai.APIError):
        responses = await client.responses.create(
            model="gpt-4o",
            input="x",
            stream=True,
            tools=RESPONSES_TOOLS,
        )
        async for _ in responses:
            pass
    aclient = anthropic.AsyncAnthropic(base_url=sc.base, api_key="x", max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as ainfo:
        async with aclient.messages.stream(
            model="claude-x",
            max_tokens=10,
            messages=MESSAGES,
            tools=ANTHROPIC_TOOLS,
        ) as s:
            async for event in s:
                assert event.type != "content_block_start"
    assert "tool 'shell'" in str(ainfo.value)


@pytest.mark.parametrize(
    ("line_end", "blank_line"),
    [("\r", "\r"), ("\r\n", "\r\n"), ("\n", "\r\n"), ("\r", "\r\n")],
    ids=["cr", "crlf", "lf-then-crlf", "cr-then-crlf"],
)
async def test_forbidden_tool_call_is_blocked_whatever_the_streams_line_endings(
    proposer: ToolProposer, make_sidecar: MakeSidecar, line_end: str, blank_line: str
) -> None:
    """Event streams may end lines with CR, LF or CRLF, mixed; a boundary is a blank line."""
    sc = await start(make_sidecar, proposer)
    proposer.tool = "shell"
    proposer.line_end, proposer.blank_line = line_end, blank_line
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{sc.base}/v1/chat/completions",
            json={"model": "gpt-4o", "messages": MESSAGES, "tools": TOOLS[:1], "stream": True},
        ) as resp,
    ):
        raw = await resp.read()
    assert b'"tool_calls"' not in raw and b"tool_call_blocked" in raw
