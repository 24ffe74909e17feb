"""Every field that offers a tool or names one is governed, through the real SDKs.

Legacy `functions` / `function_call`, chat `custom` tools, `web_search_options`,
Responses hosted and MCP tools, Anthropic `mcp_servers`, `mcp_toolset` and
`tool_choice`; replies that call a tool in any of these shapes, plain and
streamed; the egress guard over remote tool servers; and the text of Anthropic
`search_result` blocks read by the input guards.
"""

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

Events = list[tuple[str | None, Any]]


class Scripted:
    """A real aiohttp upstream that answers each path with the reply a test gives it."""

    def __init__(self) -> None:
        self.plain: dict[str, Any] = {}
        self.events: dict[str, Events] = {}
        self.bodies: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        for path in ("/v1/chat/completions", "/v1/responses", "/v1/messages"):
            app.router.add_post(path, self._answer)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        path = request.path
        if not body.get("stream"):
            return web.json_response(self.plain.get(path, _default(path, body["model"])))
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        for name, data in self.events.get(path, []):
            head = f"event: {name}\n" if name else ""
            payload = data if isinstance(data, str) else json.dumps(data)
            await resp.write(f"{head}data: {payload}\n\n".encode())
        await resp.write_eof()
        return resp


def _default(path: str, model: str) -> Any:
    if path == "/v1/messages":
        return anthropic_message(model, [{"type": "text", "text": "ok"}])
    if path == "/v1/responses":
        return response_object(model, [])
    return chat_completion(model, {"role": "assistant", "content": "ok"})


def chat_completion(model: str, message: dict[str, Any], finish: str = "stop") -> Any:
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
    }


def chat_chunks(model: str, deltas: list[dict[str, Any]], finish: str) -> Events:
    base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": model}
    events: Events = [
        (None, {**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]})
        for d in deltas
    ]
    events.append((None, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}))
    events.append((None, "[DONE]"))
    return events


def response_object(model: str, output: list[Any]) -> Any:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "status": "completed",
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2},
    }


def response_events(model: str, item: dict[str, Any]) -> Events:
    done = response_object(model, [item])
    return [
        (
            "response.created",
            {
                "type": "response.created",
                "sequence_number": 0,
                "response": {**done, "status": "in_progress", "output": []},
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
            {"type": "response.completed", "sequence_number": 2, "response": done},
        ),
    ]


def anthropic_message(model: str, content: list[Any], stop: str = "end_turn") -> Any:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 3},
    }


def anthropic_events(model: str, block: dict[str, Any]) -> Events:
    return [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {**anthropic_message(model, []), "stop_reason": None},
            },
        ),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": block},
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
    ]


def bundle(
    upstream: Scripted, tools: list[str], mode: str = "remove", **extra: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "sidecar/v1",
        "revision": "fields-1",
        "identity": {"pod": {"roles": ["analyst"]}},
        "upstreams": {
            "oai": {"base_url": upstream.url},
            "ant": {"provider": "anthropic", "base_url": upstream.url},
        },
        "routes": [
            {"match": {"model": "gpt-*"}, "upstream": "oai"},
            {"match": {"model": "claude-*"}, "upstream": "ant"},
        ],
        "roles": {"analyst": [{"actions": ["llm.*"]}, {"actions": ["tool.call"], "tools": tools}]},
        "tool_policy": {"request": mode},
        **extra,
    }


MESSAGES: Any = [{"role": "user", "content": "find it"}]
SEARCH_FN: Any = {"name": "search", "parameters": {"type": "object"}}
SHELL_FN: Any = {"name": "shell", "parameters": {"type": "object"}}


@pytest.fixture
async def upstream() -> AsyncIterator[Scripted]:
    server = Scripted()
    await server.start()
    yield server
    await server.stop()


def oai(sc: Running) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key="x", max_retries=0)


def ant(sc: Running) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=sc.base, api_key="x", max_retries=0)


async def raw_stream(sc: Running, path: str, body: dict[str, Any]) -> bytes:
    async with aiohttp.ClientSession() as http, http.post(f"{sc.base}{path}", json=body) as resp:
        return await resp.read()


# --- legacy functions / function_call ------------------------------------------------


async def test_legacy_functions_are_governed_like_tools(
    upstream: Scripted, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(bundle(upstream, ["search"]))
    raw = await oai(sc).chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=MESSAGES,
        functions=[SEARCH_FN, SHELL_FN],
        function_call={"name": "shell"},
    )
    assert raw.headers["x-sidecar-tools-removed"] == "shell"
    sent = upstream.bodies[-1]
    assert [f["name"] for f in sent["functions"]] == ["search"]
    assert sent["function_call"] == "auto"  # it named the removed function

    deny = await make_sidecar(bundle(upstream, ["search"], "deny"))
    with pytest.raises(openai.PermissionDeniedError) as info:
        await oai(deny).chat.completions.create(
            model="gpt-4o", messages=MESSAGES, functions=[SHELL_FN]
        )
    assert info.value.code == "tool_forbidden" and "'shell'" in info.value.message
    assert len(upstream.bodies) == 1


async def test_a_legacy_function_call_to_a_forbidden_tool_is_blocked(
    upstream: Scripted, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(bundle(upstream, ["search"]))
    call = {"name": "shell", "arguments": '{"cmd": "id"}'}
    upstream.plain["/v1/chat/completions"] = chat_completion(
        "gpt-4o", {"role": "assistant", "content": None, "function_call": call}, "function_call"
    )
    client = oai(sc)
    with pytest.raises(openai.PermissionDeniedError) as info:
        await client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, functions=[SEARCH_FN]
        )
    assert info.value.code == "tool_call_blocked" and "'shell'" in info.value.message

    upstream.events["/v1/chat/completions"] = chat_chunks(
        "gpt-4o",
        [{"role": "assistant", "content": None, "function_call": call}],
        "function_call",
    )
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, functions=[SEARCH_FN], stream=True
    )
    with pytest.raises(openai.APIError) as sinfo:
        async for chunk in stream:
            assert not (chunk.choices and chunk.choices[0].delta.function_call)
    assert "proposed a call to tool 'shell'" in str(sinfo.value)
    body = {"model": "gpt-4o", "messages": MESSAGES, "functions": [SEARCH_FN], "stream": True}
    raw = await raw_stream(sc, "/v1/chat/completions", body)
    assert b'"function_call"' not in raw and b"tool_call_blocked" in raw

    call["name"] = "search"  # an allowed function passes
    reply = await client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, functions=[SEARCH_FN]
    )
    assert reply.choices[0].message.function_call is not None


# --- chat custom tools and web_search_options ------------------------------------------


CUSTOM_SHELL: Any = {"type": "custom", "custom": {"name": "shell"}}
CUSTOM_CALC: Any = {"type": "custom", "custom": {"name": "calc", "description": "maths"}}


async def test_chat_custom_tools_go_by_their_name(
    upstream: Scripted, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(bundle(upstream, ["search", "calc"]))
    client = oai(sc)
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=MESSAGES,
        tools=[CUSTOM_SHELL, CUSTOM_CALC],
        tool_choice={"type": "custom", "custom": {"name": "shell"}},
    )
    assert raw.headers["x-sidecar-tools-removed"] == "shell"
    assert upstream.bodies[-1]["tools"] == [CUSTOM_CALC]
    assert upstream.bodies[-1]["tool_choice"] == "auto"

    def custom_call(name: str) -> dict[str, Any]:
        return {"id": "call_1", "type": "custom", "custom": {"name": name, "input": "rm -rf /"}}

    upstream.plain["/v1/chat/completions"] = chat_completion(
        "gpt-4o",
        {"role": "assistant", "content": None, "tool_calls": [custom_call("calc")]},
        "tool_calls",
    )
    reply = await client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, tools=[CUSTOM_CALC]
    )
    calls = reply.choices[0].message.tool_calls
    assert calls is not None and calls[0].type == "custom" and calls[0].custom.name == "calc"

    upstream.plain["/v1/chat/completions"]["choices"][0]["message"]["tool_calls"] = [
        custom_call("shell")
    ]
    with pytest.raises(openai.PermissionDeniedError) as info:
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=[CUSTOM_CALC])
    assert "tool 'shell'" in info.value.message

    upstream.events["/v1/chat/completions"] = chat_chunks(
        "gpt-4o", [{"tool_calls": [{"index": 0, **custom_call("shell")}]}], "tool_calls"
    )
    with pytest.raises(openai.APIError) as sinfo:
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, tools=[CUSTOM_CALC], stream=True
        )
        async for chunk in stream:
            assert not (chunk.choices and chunk.choices[0].delta.tool_calls)
    assert "tool 'shell'" in str(sinfo.value)


async def test_web_search_options_offer_the_web_search_tool(
    upstream: Scripted, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(bundle(upstream, ["search"]))
    raw = await oai(sc).chat.completions.with_raw_response.create(
        model="gpt-4o-search-preview", messages=MESSAGES, web_search_options={}
    )
    assert raw.headers["x-sidecar-tools-removed"] == "web_search"
    assert "web_search_options" not in upstream.bodies[-1]

    allowed = await make_sidecar(bundle(upstream, ["web_search"]))
    raw = await oai(allowed).chat.completions.with_raw_response.create(
        model="gpt-4o-search-preview",
        messages=MESSAGES,
        web_search_options={"search_context_size": "low"},
    )
    assert "x-sidecar-tools-removed" not in raw.headers
    assert upstream.bodies[-1]["web_search_options"] == {"search_context_size": "low"}


# --- Responses API: hosted tools and remote MCP servers ----------------------------------


MCP_URL = "https://mcp.example.com/sse"


async def test_responses_hosted_tools_go_by_their_real_name(
    upstream: Scripted, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(bundle(upstream, ["web_search", "search"]))
    client = oai(sc)
    raw = await client.responses.with_raw_response.create(
        model="gpt-4o",
        input="x",
        tools=[
            {"type": "web_search_preview"},
            {"type": "code_interpreter", "container": {"type": "auto"}},
            {"type": "function", "name": "search", "parameters": {}, "strict": False},
        ],
        tool_choice={"type": "code_interpreter"},
    )
    assert raw.headers["x-sidecar-tools-removed"] == "code_interpreter"
    sent = upstream.bodies[-1]
    assert [t["type"] for t in sent["tools"]] == ["web_search_preview", "function"]
    assert sent["tool_choice"] == "auto"

    # A hosted call the caller may not make, in a reply to a request that offered tools.
    search_call = {
        "type": "file_search_call",
        "id": "fs_1",
        "status": "completed",
        "queries": ["q"],
    }
    upstream.plain["/v1/responses"] = response_object("gpt-4o", [search_call])
    with pytest.raises(openai.PermissionDeniedError) as info:
        await client.responses.create(
            model="gpt-4o", input="x", tools=[{"type": "web_search_preview"}]
        )
    assert "tool 'file_search'" in info.value.message
    upstream.events["/v1/responses"] = response_events("gpt-4o", search_call)
    with pytest.raises(openai.APIError) as sinfo:
        stream = await client.responses.create(
            model="gpt-4o", input="x", tools=[{"type": "web_search_preview"}], stream=True
        )
        async for event in stream:
            assert event.type != "response.output_item.added"
    assert "tool 'file_search'" in str(sinfo.value)


async def test_responses_mcp_servers_are_governed_by_their_tools(
    upstream: Scripted, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(bundle(upstream, ["search", "calc*"]))
    client = oai(sc)
    listed: Any = {
        "type": "mcp",
        "server_label": "docs",
        "server_url": MCP_URL,
        "allowed_tools": {"tool_names": ["search", "shell"]},
        "require_approval": "never",
    }
    unlisted: Any = {"type": "mcp", "server_label": "any", "server_url": MCP_URL}
    raw = await client.responses.with_raw_response.create(
        model="gpt-4o", input="x", tools=[listed, unlisted]
    )
    assert raw.headers["x-sidecar-tools-removed"] == "shell,*"
    sent = upstream.bodies[-1]["tools"]
    assert len(sent) == 1 and sent[0]["allowed_tools"] == {"tool_names": ["search"]}

    everything = await make_sidecar(bundle(upstream, ["*"]))
    await oai(everything).responses.create(model="gpt-4o", input="x", tools=[unlisted])
    assert upstream.bodies[-1]["tools"] == [unlisted]

    mcp_call = {
        "type": "mcp_call",
        "id": "mcp_1",
        "server_label": "docs",
        "name": "shell",
        "arguments": "{}",
        "output": "done",
    }
    upstream.plain["/v1/responses"] = response_object("gpt-4o", [mcp_call])
    with pytest.raises(openai.PermissionDeniedError) as info:
        await client.responses.create(model="gpt-4o", input="x", tools=[listed])
    assert "tool 'shell'" in info.value.message
    upstream.events["/v1/responses"] = response_events("gpt-4o", mcp_call)
    with pytest.raises(openai.APIError):
        stream = await client.responses.create(
            model="gpt-4o", input="x", tools=[listed], stream=True
        )
        async for event in stream:
            assert event.type != "response.output_item.added"
    body = {"model": "gpt-4o", "input": "x", "tools": [listed], "stream": True}
    raw_bytes = await raw_stream(sc, "/v1/responses", body)
    assert b"mcp_call" not in raw_bytes and b"tool_call_blocked" in raw_bytes


EGRESS_GUARD: Any = {"tool": [{"id": "egress", "kind": "egress", "tools": ["fetch*"]}]}


async def test_remote_tool_server_urls_pass_the_egress_guard(
    upstream: Scripted, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(bundle(upstream, ["*"], guards=EGRESS_GUARD))
    metadata: Any = {
        "type": "mcp",
        "server_label": "meta",
        "server_url": "http://169.254.169.254/latest/meta-data/",
    }
    with pytest.raises(openai.BadRequestError) as info:
        await oai(sc).responses.create(model="gpt-4o", input="x", tools=[metadata])
    assert info.value.code == "guard_blocked" and "SSRF_METADATA" in info.value.message
    private: Any = [{"type": "url", "name": "intranet", "url": "http://10.0.0.7/mcp"}]
    with pytest.raises(anthropic.BadRequestError) as ainfo:
        await ant(sc).beta.messages.create(
            model="claude-x",
            max_tokens=10,
            messages=MESSAGES,
            mcp_servers=private,
            betas=["mcp-client-2025-04-04"],
        )
    assert "SSRF_PRIVATE_ADDRESS" in str(ainfo.value)
    assert upstream.bodies == []

    public: Any = {"type": "mcp", "server_label": "docs", "server_url": MCP_URL}
    await oai(sc).responses.create(model="gpt-4o", input="x", tools=[public])
    assert upstream.bodies[-1]["tools"] == [public]


# --- Anthropic: mcp_servers, mcp_toolset, tool_choice -------------------------------------


async def test_anthropic_mcp_servers_are_governed_by_their_tools(
    upstream: Scripted, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(bundle(upstream, ["search"]))
    client = ant(sc)
    servers: Any = [
        {
            "type": "url",
            "name": "docs",
            "url": MCP_URL,
            "tool_configuration": {"allowed_tools": ["search", "shell"]},
        },
        {"type": "url", "name": "anything", "url": MCP_URL},
    ]
    raw = await client.beta.messages.with_raw_response.create(
        model="claude-x",
        max_tokens=10,
        messages=MESSAGES,
        mcp_servers=servers,
        betas=["mcp-client-2025-04-04"],
    )
    assert raw.headers["x-sidecar-tools-removed"] == "shell,*"
    sent = upstream.bodies[-1]["mcp_servers"]
    assert [s["name"] for s in sent] == ["docs"]
    assert sent[0]["tool_configuration"] == {"allowed_tools": ["search"]}

    # The newer connector: tools enabled per server by an mcp_toolset entry.
    toolset: Any = {
        "type": "mcp_toolset",
        "mcp_server_name": "docs",
        "default_config": {"enabled": False},
        "configs": {"search": {"enabled": True}, "shell": {"enabled": True}},
    }
    await client.beta.messages.create(
        model="claude-x",
        max_tokens=10,
        messages=MESSAGES,
        mcp_servers=[{"type": "url", "name": "docs", "url": MCP_URL}],
        tools=[toolset],
        betas=["mcp-client-2025-11-20"],
    )
    sent_set = upstream.bodies[-1]["tools"][0]
    assert sent_set["configs"] == {"search": {"enabled": True}, "shell": {"enabled": False}}
    open_set: Any = {"type": "mcp_toolset", "mcp_server_name": "docs"}
    await client.beta.messages.create(
        model="claude-x",
        max_tokens=10,
        messages=MESSAGES,
        mcp_servers=[{"type": "url", "name": "docs", "url": MCP_URL}],
        tools=[open_set, {"name": "search", "input_schema": {"type": "object"}}],
        betas=["mcp-client-2025-11-20"],
    )
    assert "mcp_servers" not in upstream.bodies[-1]
    assert [t.get("name") for t in upstream.bodies[-1]["tools"]] == ["search"]

    block = {
        "type": "mcp_tool_use",
        "id": "mcptoolu_1",
        "name": "shell",
        "server_name": "docs",
        "input": {},
    }
    upstream.plain["/v1/messages"] = anthropic_message("claude-x", [block], "tool_use")
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        await client.beta.messages.create(
            model="claude-x",
            max_tokens=10,
            messages=MESSAGES,
            mcp_servers=servers[:1],
            betas=["mcp-client-2025-04-04"],
        )
    assert "tool 'shell'" in str(info.value)
    upstream.events["/v1/messages"] = anthropic_events("claude-x", block)
    with pytest.raises(anthropic.APIStatusError) as sinfo:
        async with client.beta.messages.stream(
            model="claude-x",
            max_tokens=10,
            messages=MESSAGES,
            mcp_servers=servers[:1],
            betas=["mcp-client-2025-04-04"],
        ) as stream:
            async for event in stream:
                assert event.type != "content_block_start"
    assert "tool 'shell'" in str(sinfo.value)


async def test_anthropic_tool_choice_naming_a_forbidden_tool_is_governed(
    upstream: Scripted, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(bundle(upstream, ["search", "web_search"]))
    tools: Any = [
        {"name": "search", "input_schema": {"type": "object"}},
        {"type": "web_search_20250305", "name": "web_search"},
    ]
    raw = await ant(sc).messages.with_raw_response.create(
        model="claude-x",
        max_tokens=10,
        messages=MESSAGES,
        tools=tools,
        tool_choice={"type": "tool", "name": "shell"},
    )
    assert raw.headers["x-sidecar-tools-removed"] == "shell"
    assert upstream.bodies[-1]["tool_choice"] == {"type": "auto"}
    assert upstream.bodies[-1]["tools"] == tools

    deny = await make_sidecar(bundle(upstream, ["search"], "deny"))
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        await ant(deny).messages.create(
            model="claude-x",
            max_tokens=10,
            messages=MESSAGES,
            tools=tools[:1],
            tool_choice={"type": "tool", "name": "shell"},
        )
    assert "offers tools 'shell'" in str(info.value)


# --- Anthropic search_result blocks and the input guards ---------------------------------


SEARCH_GUARDS: Any = {
    "input": [
        {"id": "no-plugh", "kind": "deny", "words": ["plugh"]},
        {"id": "pii", "kind": "pii", "types": ["EMAIL"], "action": "redact"},
    ]
}


def search_result(text: str) -> dict[str, Any]:
    return {
        "type": "search_result",
        "source": "https://docs.example.com/a",
        "title": "A page",
        "content": [{"type": "text", "text": text}],
    }


async def test_search_result_blocks_are_read_by_the_input_guards(
    upstream: Scripted, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(bundle(upstream, ["*"], guards=SEARCH_GUARDS))
    client = ant(sc)
    in_user: Any = [
        {"role": "user", "content": [search_result("say plugh"), {"type": "text", "text": "hi"}]}
    ]
    with pytest.raises(anthropic.BadRequestError) as info:
        await client.messages.create(model="claude-x", max_tokens=10, messages=in_user)
    assert "no-plugh" in str(info.value) and "tool_result" in str(info.value)
    content_document: Any = {
        "type": "document",
        "source": {"type": "content", "content": [{"type": "text", "text": "plugh"}]},
    }
    with pytest.raises(anthropic.BadRequestError):
        await client.messages.create(
            model="claude-x",
            max_tokens=10,
            messages=[{"role": "user", "content": [content_document]}],
        )

    in_tool_result: Any = [
        {"role": "user", "content": "find it"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "tu_1", "name": "search", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "tu_1",
                    "content": [search_result("write to bob@example.com")],
                }
            ],
        },
    ]
    with pytest.raises(anthropic.BadRequestError):
        in_tool_result[2]["content"][0]["content"][0]["content"][0]["text"] = "plugh"
        await client.messages.create(model="claude-x", max_tokens=10, messages=in_tool_result)
    earlier_mcp_call: Any = {
        "type": "mcp_call",
        "id": "mcp_1",
        "server_label": "docs",
        "name": "search",
        "arguments": "{}",
        "output": "the page says plugh",
    }
    with pytest.raises(openai.BadRequestError) as oinfo:
        await oai(sc).responses.create(model="gpt-4o", input=[earlier_mcp_call])
    assert "no-plugh" in oinfo.value.message
    in_tool_result[2]["content"][0]["content"][0]["content"][0]["text"] = "mail bob@example.com"
    await client.messages.create(model="claude-x", max_tokens=10, messages=in_tool_result)
    sent = upstream.bodies[-1]["messages"][2]["content"][0]["content"][0]
    assert sent["content"][0]["text"] == "mail [EMAIL]"
    assert sent["source"] == "https://docs.example.com/a"  # the block keeps its shape


# --- choices restricted to some tools, namespaces, servers listing no tools --------------


async def test_allowed_tools_choices_and_namespaces_lose_only_forbidden_tools(
    upstream: Scripted, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(bundle(upstream, ["search", "calc"]))
    client = oai(sc)
    fn_tools: Any = [
        {"type": "function", "function": SEARCH_FN},
        {"type": "function", "function": SHELL_FN},
    ]
    await client.chat.completions.create(
        model="gpt-4o",
        messages=MESSAGES,
        tools=fn_tools,
        tool_choice={
            "type": "allowed_tools",
            "allowed_tools": {"mode": "required", "tools": fn_tools},
        },
    )
    sent = upstream.bodies[-1]
    assert sent["tools"] == fn_tools[:1]
    assert sent["tool_choice"]["allowed_tools"]["tools"] == fn_tools[:1]

    namespace: Any = {
        "type": "namespace",
        "name": "ops",
        "description": "operations",
        "tools": [
            {"type": "function", "name": "shell", "parameters": {}},
            {"type": "custom", "name": "calc"},
        ],
    }
    empty_server: Any = {
        "type": "mcp",
        "server_label": "quiet",
        "server_url": MCP_URL,
        "allowed_tools": [],
    }
    raw = await client.responses.with_raw_response.create(
        model="gpt-4o", input="x", tools=[namespace, empty_server]
    )
    assert raw.headers["x-sidecar-tools-removed"] == "shell"
    sent_tools = upstream.bodies[-1]["tools"]
    assert [t["name"] for t in sent_tools[0]["tools"]] == ["calc"]
    assert sent_tools[1] == empty_server  # it offers no tool, so it loses none

    deny = await make_sidecar(bundle(upstream, ["search"], "deny"))
    with pytest.raises(openai.PermissionDeniedError) as info:
        await oai(deny).responses.create(
            model="gpt-4o",
            input="x",
            tools=[{"type": "mcp", "server_label": "any", "server_url": MCP_URL}],
        )
    assert "offers tools '*'" in info.value.message


async def test_a_server_with_no_tools_enabled_still_passes_the_egress_guard(
    upstream: Scripted, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(bundle(upstream, ["search"], guards=EGRESS_GUARD))
    quiet: Any = [
        {
            "type": "url",
            "name": "quiet",
            "url": "http://127.0.0.1:9/mcp",
            "tool_configuration": {"enabled": False},
        }
    ]
    with pytest.raises(anthropic.BadRequestError) as info:
        await ant(sc).beta.messages.create(
            model="claude-x",
            max_tokens=10,
            messages=MESSAGES,
            mcp_servers=quiet,
            betas=["mcp-client-2025-04-04"],
        )
    assert "tool server quiet" in str(info.value)
    assert upstream.bodies == []


# --- tool guards read custom tool input ----------------------------------------------------


TOOL_GUARD: Any = {
    "tool": [
        {
            "id": "no-passwd",
            "kind": "pattern",
            "patterns": [{"type": "PASSWD", "regex": "/etc/passwd", "max_length": 11}],
        }
    ]
}


async def test_tool_guards_read_the_input_of_chat_custom_tool_calls(
    upstream: Scripted, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(bundle(upstream, ["calc"], guards=TOOL_GUARD))
    client = oai(sc)
    call = {
        "id": "call_1",
        "type": "custom",
        "custom": {"name": "calc", "input": "cat /etc/passwd"},
    }
    upstream.plain["/v1/chat/completions"] = chat_completion(
        "gpt-4o", {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"
    )
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=[CUSTOM_CALC])
    assert info.value.code == "guard_blocked" and "no-passwd" in info.value.message

    first = {"index": 0, "id": "call_1", "type": "custom", "custom": {"name": "calc", "input": ""}}
    upstream.events["/v1/chat/completions"] = chat_chunks(
        "gpt-4o",
        [
            {"tool_calls": [first]},
            {"tool_calls": [{"index": 0, "custom": {"input": "cat /etc/"}}]},
            {"tool_calls": [{"index": 0, "custom": {"input": "passwd"}}]},
        ],
        "tool_calls",
    )
    with pytest.raises(openai.APIError) as sinfo:
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, tools=[CUSTOM_CALC], stream=True
        )
        async for _ in stream:
            pass
    assert "no-passwd" in str(sinfo.value)


async def test_tool_guards_read_streamed_responses_custom_tool_input(
    upstream: Scripted, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(bundle(upstream, ["calc"], guards=TOOL_GUARD))
    item = {"type": "custom_tool_call", "id": "ct_1", "call_id": "c1", "name": "calc", "input": ""}
    done = {**item, "input": "cat /etc/passwd"}

    def event(kind: str, **fields: Any) -> tuple[str, Any]:
        return kind, {"type": kind, "sequence_number": 0, "output_index": 0, **fields}

    upstream.events["/v1/responses"] = [
        event("response.output_item.added", item=item),
        event("response.custom_tool_call_input.delta", item_id="ct_1", delta="cat /etc/"),
        event("response.custom_tool_call_input.delta", item_id="ct_1", delta="passwd"),
        event("response.custom_tool_call_input.done", item_id="ct_1", input="cat /etc/passwd"),
        event("response.output_item.done", item=done),
        (
            "response.completed",
            {
                "type": "response.completed",
                "sequence_number": 5,
                "response": response_object("gpt-4o", [done]),
            },
        ),
    ]
    tools: Any = [{"type": "custom", "name": "calc"}]
    with pytest.raises(openai.APIError) as info:
        stream = await oai(sc).responses.create(model="gpt-4o", input="x", tools=tools, stream=True)
        async for _ in stream:
            pass
    assert "no-passwd" in str(info.value)
    body = {"model": "gpt-4o", "input": "x", "tools": tools, "stream": True}
    raw = await raw_stream(sc, "/v1/responses", body)
    assert b"guard_blocked" in raw and b"custom_tool_call_input.done" not in raw


async def test_a_reply_to_a_stored_prompt_is_checked_for_tool_calls(
    upstream: Scripted, make_sidecar: MakeSidecar
) -> None:
    """A stored prompt can bring tools the request does not show; its calls are still checked."""
    sc = await make_sidecar(bundle(upstream, ["search"]))
    call = {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "shell"}
    upstream.plain["/v1/responses"] = response_object("gpt-4o", [{**call, "arguments": "{}"}])
    with pytest.raises(openai.PermissionDeniedError) as info:
        await oai(sc).responses.create(model="gpt-4o", prompt={"id": "pmpt_1"})
    assert "tool 'shell'" in info.value.message
    upstream.events["/v1/responses"] = response_events("gpt-4o", {**call, "arguments": ""})
    with pytest.raises(openai.APIError):
        stream = await oai(sc).responses.create(
            model="gpt-4o", prompt={"id": "pmpt_1"}, stream=True
        )
        async for event in stream:
            assert event.type != "response.output_item.added"
