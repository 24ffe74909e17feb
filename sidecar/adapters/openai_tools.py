"""Every field of an OpenAI request that offers the model a tool; every reply part calling one.

Chat Completions offers tools in `tools` (function and custom tools), the
legacy `functions`, and `web_search_options` (the hosted web search); it
names a tool to use in `tool_choice` and the legacy `function_call`. The
Responses API offers function, custom, namespaced, hosted and remote MCP
tools in `tools`. Each is named as `tool_names` says, and removing a tool
removes it from every field that offers or names it, so a forbidden tool
neither reaches the model nor stays chosen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sidecar.adapters.tool_names import ANY_TOOL, dicts, hosted_name, str_list

WEB_SEARCH = "web_search"

# Responses output items for hosted tools, which carry no name: the tool they call.
_HOSTED_CALLS = {
    "web_search_call": "web_search",
    "file_search_call": "file_search",
    "code_interpreter_call": "code_interpreter",
    "computer_call": "computer",
    "image_generation_call": "image_generation",
    "local_shell_call": "local_shell",
    "shell_call": "shell",
    "apply_patch_call": "apply_patch",
    "tool_search_call": "tool_search",
}
# Output items that name the tool they call (or ask to call, for an MCP approval).
_NAMED_CALLS = frozenset({"function_call", "custom_tool_call", "mcp_call", "mcp_approval_request"})


# --- Chat Completions ------------------------------------------------------------------


def _chat_tool_names(tool: object) -> list[str]:
    """`{type: function, function: {name}}`, `{type: custom, custom: {name}}`, or hosted."""
    if not isinstance(tool, dict):
        return []
    kind = tool.get("type")
    if kind is None or kind == "function" or kind == "custom":
        fn = tool.get("function")
        if isinstance(fn, dict) and "custom" not in tool:  # the common shape, quickly
            name = fn.get("name")
            return [name] if isinstance(name, str) else []
        # A stream's first delta of a call may leave `type` out; the named part says it.
        names: list[str] = []
        for key in ("function", "custom"):
            inner = tool.get(key)
            if isinstance(inner, dict):
                name = inner.get("name")
                if isinstance(name, str):
                    names.append(name)
        if not names and isinstance(tool.get("name"), str):
            names.append(tool["name"])
        return names
    if not isinstance(kind, str):
        return []
    if kind == "allowed_tools":  # a tool_choice restricting the model to some tools
        allowed = tool.get("allowed_tools")
        listed = allowed.get("tools") if isinstance(allowed, dict) else None
        return [n for t in dicts(listed) for n in _chat_tool_names(t)]
    return [hosted_name(kind)]


def chat_offered(body: dict[str, Any]) -> list[str]:
    names: list[str] = []
    tools = body.get("tools")
    if isinstance(tools, list):
        for tool in tools:
            names += _chat_tool_names(tool)
    if "functions" in body:
        names += [n for fn in dicts(body["functions"]) for n in _function_name(fn)]
    if body.get("web_search_options") is not None:
        names.append(WEB_SEARCH)
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        names += _chat_tool_names(choice)
    legacy = body.get("function_call")
    if isinstance(legacy, dict) and isinstance(legacy.get("name"), str):
        names.append(legacy["name"])
    return names


def chat_without(body: dict[str, Any], drop: set[str]) -> None:
    _filter_list(body, "tools", _chat_tool_names, drop, ("tool_choice",))
    _filter_list(body, "functions", _function_name, drop, ("function_call",))
    if WEB_SEARCH in drop:
        body.pop("web_search_options", None)
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        if choice.get("type") == "allowed_tools":
            allowed = choice.get("allowed_tools")
            if isinstance(allowed, dict) and isinstance(allowed.get("tools"), list):
                allowed["tools"] = [
                    t for t in allowed["tools"] if not drop.intersection(_chat_tool_names(t))
                ]
                if not allowed["tools"]:
                    body["tool_choice"] = "auto"
        elif drop.intersection(_chat_tool_names(choice)):
            body["tool_choice"] = "auto"
    legacy = body.get("function_call")
    if isinstance(legacy, dict) and legacy.get("name") in drop:
        body["function_call"] = "auto"
    if "tools" not in body:
        body.pop("parallel_tool_calls", None)


def _function_name(fn: object) -> list[str]:
    name = fn.get("name") if isinstance(fn, dict) else None
    return [name] if isinstance(name, str) else []


def _filter_list(
    body: dict[str, Any],
    key: str,
    names_of: Callable[[object], list[str]],
    drop: set[str],
    choices: tuple[str, ...],
) -> None:
    """Drop the entries of `body[key]` naming a dropped tool; with none left, the key and
    the choice fields that would then name nothing go too (the provider rejects them)."""
    entries = body.get(key)
    if not isinstance(entries, list):
        return
    kept = [e for e in entries if not drop.intersection(names_of(e))]
    if kept:
        body[key] = kept
        return
    body.pop(key, None)
    for choice in choices:
        body.pop(choice, None)


def chat_message_calls(message: dict[str, Any]) -> list[str]:
    """Tools a chat message (or a stream delta) calls: `tool_calls` and legacy `function_call`."""
    names: list[str] = []
    for tc in dicts(message.get("tool_calls")):
        names += _chat_tool_names(tc)
    legacy = message.get("function_call")
    if isinstance(legacy, dict) and isinstance(legacy.get("name"), str):
        names.append(legacy["name"])
    return names


# --- Responses -------------------------------------------------------------------------


def _mcp_listed(tool: dict[str, Any]) -> list[str] | None:
    """The tools an MCP server entry allows, or None when it allows all the server has."""
    allowed = tool.get("allowed_tools")
    if isinstance(allowed, dict):
        return str_list(allowed.get("tool_names"))
    return str_list(allowed)


def _responses_tool_names(tool: object) -> list[str]:
    if not isinstance(tool, dict):
        return []
    kind = tool.get("type", "function")
    if not isinstance(kind, str):
        return []
    if kind in ("function", "custom"):
        name = tool.get("name")
        return [name] if isinstance(name, str) else []
    if kind == "namespace":
        return [n for t in dicts(tool.get("tools")) for n in _responses_tool_names(t)]
    if kind == "mcp":
        listed = _mcp_listed(tool)
        return [ANY_TOOL] if listed is None else listed
    if kind == "allowed_tools":
        return [n for t in dicts(tool.get("tools")) for n in _responses_tool_names(t)]
    return [hosted_name(kind)]


def _choice_names(choice: dict[str, Any]) -> list[str]:
    if choice.get("type") == "mcp":  # a server's tool by name; the server itself is in `tools`
        name = choice.get("name")
        return [name] if isinstance(name, str) else []
    return _responses_tool_names(choice)


def responses_offered(body: dict[str, Any]) -> list[str]:
    names: list[str] = []
    tools = body.get("tools")
    if isinstance(tools, list):
        for tool in tools:
            names += _responses_tool_names(tool)
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        names += _choice_names(choice)
    return names


def _kept_tool(tool: Any, drop: set[str]) -> bool:
    """Whether `tool` stays; an MCP server or namespace is narrowed in place first."""
    if not isinstance(tool, dict):
        return True
    kind = tool.get("type")
    if kind == "namespace" and isinstance(tool.get("tools"), list):
        tool["tools"] = [t for t in tool["tools"] if _kept_tool(t, drop)]
        return bool(tool["tools"])
    if kind == "mcp":
        listed = _mcp_listed(tool)
        if listed is None:
            return ANY_TOOL not in drop
        kept = [n for n in listed if n not in drop]
        if kept != listed:
            allowed = tool["allowed_tools"]
            if isinstance(allowed, dict):
                allowed["tool_names"] = kept
            else:
                tool["allowed_tools"] = kept
        return bool(kept) or not listed  # a server listing no tools loses none
    return not drop.intersection(_responses_tool_names(tool))


def responses_without(body: dict[str, Any], drop: set[str]) -> None:
    tools = body.get("tools")
    if isinstance(tools, list):
        kept = [t for t in tools if _kept_tool(t, drop)]
        if kept:
            body["tools"] = kept
        else:
            for key in ("tools", "tool_choice", "parallel_tool_calls"):
                body.pop(key, None)
    choice = body.get("tool_choice")
    if not isinstance(choice, dict):
        return
    if choice.get("type") == "allowed_tools" and isinstance(choice.get("tools"), list):
        choice["tools"] = [t for t in choice["tools"] if _kept_tool(t, drop)]
        if not choice["tools"]:
            body["tool_choice"] = "auto"
    elif drop.intersection(_choice_names(choice)) or _server_gone(body, choice):
        body["tool_choice"] = "auto"


def _server_gone(body: dict[str, Any], choice: dict[str, Any]) -> bool:
    """A choice of an MCP server that removal took out of `tools`."""
    if choice.get("type") != "mcp":
        return False
    label = choice.get("server_label")
    return not any(
        t.get("type") == "mcp" and t.get("server_label") == label for t in dicts(body.get("tools"))
    )


def output_item_call(item: object) -> str | None:
    """The tool a Responses output item calls, if it is a call."""
    if not isinstance(item, dict):
        return None
    kind = item.get("type")
    if kind in _NAMED_CALLS:
        name = item.get("name")
        return name if isinstance(name, str) else None
    return _HOSTED_CALLS.get(kind) if isinstance(kind, str) else None


def responses_server_urls(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(server label, URL) of each remote MCP server the provider is asked to call."""
    return [
        (str(t.get("server_label")), t["server_url"])
        for t in dicts(body.get("tools"))
        if t.get("type") == "mcp" and isinstance(t.get("server_url"), str)
    ]


# `_call"` ends the type of every Responses call item (function_call, mcp_call,
# web_search_call, ...); an MCP approval request asks for a call.
TOOL_MARKERS: tuple[bytes, ...] = (
    b"tool_calls",
    b"function_call",
    b'_call"',
    b"mcp_approval_request",
)


def _proposed_tools(body: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for choice in dicts(body.get("choices")):
        message = choice.get("message")
        if isinstance(message, dict):
            names += chat_message_calls(message)
    for item in dicts(body.get("output")):
        name = output_item_call(item)
        if name:
            names.append(name)
    return names


def _event_tools(event: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for choice in dicts(event.get("choices")):
        delta = choice.get("delta")
        if isinstance(delta, dict):
            # only the first delta of a call carries its name
            names += chat_message_calls(delta)
    name = output_item_call(event.get("item"))
    if name:
        names.append(name)
    response = event.get("response")
    if isinstance(response, dict):
        names += _proposed_tools(response)
    return names
