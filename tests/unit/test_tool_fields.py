"""Tool-bearing fields, sans-IO: what each request offers, and that removal leaves none behind."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import orjson
import pytest

from sidecar.adapters.anthropic import ADAPTER as ANTHROPIC
from sidecar.adapters.openai import ADAPTER as OPENAI
from sidecar.adapters.tool_names import hosted_name

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
MESSAGES = "/v1/messages"

FN_SHELL: Any = {"type": "function", "function": {"name": "shell"}}
FN_SEARCH: Any = {"type": "function", "function": {"name": "search"}}

# (adapter, path, body, the names it offers)
CASES: list[tuple[Any, str, dict[str, Any], list[str]]] = [
    (
        OPENAI,
        CHAT,
        {
            "tools": [FN_SEARCH, FN_SHELL, {"type": "custom", "custom": {"name": "calc"}}],
            "tool_choice": {
                "type": "allowed_tools",
                "allowed_tools": {"mode": "auto", "tools": [FN_SHELL]},
            },
            "parallel_tool_calls": False,
        },
        ["search", "shell", "calc"],
    ),
    (
        OPENAI,
        CHAT,
        {
            "functions": [{"name": "search"}, {"name": "shell"}],
            "function_call": {"name": "shell"},
            "web_search_options": {},
        },
        ["search", "shell", "web_search"],
    ),
    (
        OPENAI,
        CHAT,
        {"tools": [FN_SEARCH], "tool_choice": {"type": "custom", "custom": {"name": "x"}}},
        ["search", "x"],
    ),
    (
        OPENAI,
        RESPONSES,
        {
            "tools": [
                {"type": "web_search_preview_2025_03_11"},
                {"type": "computer_use_preview", "display_width": 1, "display_height": 1},
                {"type": "function", "name": "search"},
                {
                    "type": "namespace",
                    "name": "ops",
                    "description": "",
                    "tools": [
                        {"type": "function", "name": "shell"},
                        {"type": "custom", "name": "c"},
                    ],
                },
                {"type": "mcp", "server_label": "a", "allowed_tools": ["read", "write"]},
                {"type": "mcp", "server_label": "b", "allowed_tools": {"tool_names": ["list"]}},
                {"type": "mcp", "server_label": "c", "server_url": "https://x.example"},
            ],
            "tool_choice": {"type": "mcp", "server_label": "a", "name": "write"},
        },
        ["web_search", "computer", "search", "shell", "c", "read", "write", "list", "*"],
    ),
    (
        OPENAI,
        RESPONSES,
        {
            "tools": [{"type": "file_search", "vector_store_ids": []}],
            "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "shell"}]},
        },
        ["file_search", "shell"],
    ),
    (
        ANTHROPIC,
        MESSAGES,
        {
            "tools": [
                {"name": "search", "input_schema": {}},
                {"type": "web_fetch_20250910", "name": "web_fetch"},
                {
                    "type": "mcp_toolset",
                    "mcp_server_name": "pinned",
                    "tools": [
                        {"name": "p1", "input_schema": {}},
                        {"name": "p2", "input_schema": {}},
                    ],
                    "configs": {"p2": {"enabled": False}},
                },
                {"type": "mcp_toolset", "mcp_server_name": "open"},
            ],
            "mcp_servers": [
                {"type": "url", "name": "pinned", "url": "https://p.example"},
                {"type": "url", "name": "open", "url": "https://o.example"},
                {
                    "type": "url",
                    "name": "old",
                    "url": "https://old.example",
                    "tool_configuration": {"allowed_tools": ["o1", "o2"]},
                },
            ],
            "tool_choice": {"type": "tool", "name": "shell"},
        },
        ["search", "web_fetch", "p1", "*", "o1", "o2", "shell"],
    ),
]


@pytest.mark.parametrize(("adapter", "path", "body", "names"), CASES)
def test_every_tool_bearing_field_is_read(
    adapter: Any, path: str, body: dict[str, Any], names: list[str]
) -> None:
    call = adapter.parse(path, orjson.dumps({"model": "m", **body}))
    assert list(dict.fromkeys(call.tool_names)) == names  # a tool offered and chosen repeats


@pytest.mark.parametrize(("adapter", "path", "body", "names"), CASES)
def test_removal_leaves_no_forbidden_tool_in_any_field(
    adapter: Any, path: str, body: dict[str, Any], names: list[str]
) -> None:
    """Whatever subset is forbidden, the rewritten request offers only the rest."""
    for size in range(1, len(names) + 1):
        for drop in itertools.combinations(names, size):
            rewritten = copy.deepcopy(body)
            adapter.without_tools(path, rewritten, set(drop))
            call = adapter.parse(path, orjson.dumps({"model": "m", **rewritten}))
            assert not set(drop) & set(call.tool_names), (drop, rewritten)
            assert set(call.tool_names) <= set(names)


def test_a_choice_of_a_removed_mcp_server_becomes_auto() -> None:
    body: dict[str, Any] = {
        "tools": [
            {"type": "mcp", "server_label": "open", "server_url": "https://x.example"},
            {"type": "function", "name": "search"},
        ],
        "tool_choice": {"type": "mcp", "server_label": "open"},
    }
    OPENAI.without_tools(RESPONSES, body, {"*"})
    assert body == {"tools": [{"type": "function", "name": "search"}], "tool_choice": "auto"}


def test_an_anthropic_choice_of_a_removed_tool_keeps_its_parallel_setting() -> None:
    body: dict[str, Any] = {
        "tools": [{"name": "search"}, {"name": "shell"}],
        "tool_choice": {"type": "tool", "name": "shell", "disable_parallel_tool_use": True},
    }
    ANTHROPIC.without_tools(MESSAGES, body, {"shell"})
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_hosted_names_drop_versions_and_previews() -> None:
    assert hosted_name("web_search_preview_2025_03_11") == "web_search"
    assert hosted_name("web_search_2025_08_26") == "web_search"
    assert hosted_name("web_search_20250305") == "web_search"
    assert hosted_name("computer_use_preview") == "computer"
    assert hosted_name("code_interpreter") == "code_interpreter"


MALFORMED: list[dict[str, Any]] = [
    {"tools": 5, "functions": "x", "web_search_options": None, "mcp_servers": {"a": 1}},
    {"tools": [None, 1, "x", {"type": 3}, {"type": "function", "function": "shell"}]},
    {"functions": [None, {"name": 1}], "function_call": "auto", "tool_choice": 7},
    {"tools": [{"type": "mcp", "allowed_tools": {"tool_names": "abc"}}]},
    {"tools": [{"type": "namespace", "tools": 1}, {"type": "allowed_tools", "tools": "x"}]},
    {"tools": [{"type": "mcp_toolset", "mcp_server_name": 1, "configs": []}]},
    {"mcp_servers": [None, {"name": 1, "url": 2, "tool_configuration": "x"}]},
    {"tool_choice": {"type": "allowed_tools", "allowed_tools": {"tools": 3}}},
    {"messages": [{"role": "assistant", "function_call": 1, "tool_calls": 2}]},
]


@pytest.mark.parametrize("body", MALFORMED)
@pytest.mark.parametrize(
    ("adapter", "path"), [(OPENAI, CHAT), (OPENAI, RESPONSES), (ANTHROPIC, MESSAGES)]
)
def test_malformed_tool_fields_neither_raise_nor_pass_a_forbidden_tool(
    adapter: Any, path: str, body: dict[str, Any]
) -> None:
    call = adapter.parse(path, orjson.dumps({"model": "m", **body}))
    names = call.tool_names
    assert isinstance(call.tool_calls, list)
    adapter.without_tools(path, call.body, {*names, "*", "shell"})
    adapter.tool_urls(path, call.body)
    assert adapter.parse(path, orjson.dumps(call.body)).tool_names == []


def test_replies_calling_tools_in_every_shape() -> None:
    chat = {
        "choices": [
            {
                "message": {
                    "function_call": {"name": "legacy"},
                    "tool_calls": [
                        {"type": "function", "function": {"name": "fn"}},
                        {"type": "custom", "custom": {"name": "cu"}},
                    ],
                }
            }
        ]
    }
    assert OPENAI.proposed_tools(CHAT, chat) == ["fn", "cu", "legacy"]
    output = [
        {"type": "mcp_call", "name": "m"},
        {"type": "mcp_approval_request", "name": "ap"},
        {"type": "web_search_call"},
        {"type": "computer_call"},
        {"type": "custom_tool_call", "name": "cu"},
        {"type": "mcp_list_tools", "tools": [{"name": "listed"}]},
    ]
    assert OPENAI.proposed_tools(RESPONSES, {"output": output}) == [
        "m",
        "ap",
        "web_search",
        "computer",
        "cu",
    ]
    content = [
        {"type": "server_tool_use", "name": "web_search"},
        {"type": "mcp_tool_use", "name": "m", "server_name": "s"},
    ]
    assert ANTHROPIC.proposed_tools(MESSAGES, {"content": content}) == ["web_search", "m"]
    event = {"type": "content_block_start", "content_block": content[1]}
    assert ANTHROPIC.event_tools(MESSAGES, event) == ["m"]
    delta = {"choices": [{"delta": {"tool_calls": [{"index": 0, "custom": {"name": "cu"}}]}}]}
    assert OPENAI.event_tools(CHAT, delta) == ["cu"]
