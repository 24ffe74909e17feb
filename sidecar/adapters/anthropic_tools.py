"""Every field of an Anthropic request that offers the model a tool, and where it sends calls.

Client and server tools (`web_search`, `web_fetch`, `code_execution`, ...)
come in `tools` under their own names. Remote MCP servers come in
`mcp_servers`; which of their tools the model may use is said either by the
server's `tool_configuration` or by an `mcp_toolset` entry in `tools`
(`default_config`, per-tool `configs`, optionally the pinned tool listing).
`tool_choice` may name one tool. Removing a tool takes it out of each of
these; a server left with no tool goes, with its toolset.
"""

from __future__ import annotations

from typing import Any

from sidecar.adapters.tool_names import ANY_TOOL, dicts, str_list

TOOLSET = "mcp_toolset"


def _enabled(config: object, default: bool) -> bool:
    value = config.get("enabled") if isinstance(config, dict) else None
    return value if isinstance(value, bool) else default


def _toolset_tools(toolset: dict[str, Any]) -> list[str] | None:
    """The tools a toolset enables, or None when it enables whatever the server has."""
    default = _enabled(toolset.get("default_config"), True)
    configs = toolset.get("configs")
    configs = configs if isinstance(configs, dict) else {}
    pinned = [t["name"] for t in dicts(toolset.get("tools")) if isinstance(t.get("name"), str)]
    if pinned:
        return [n for n in pinned if _enabled(configs.get(n), default)]
    if default:
        return None
    return [n for n, c in configs.items() if isinstance(n, str) and _enabled(c, False)]


def _configured_tools(server: dict[str, Any]) -> list[str] | None:
    config = server.get("tool_configuration")
    if not isinstance(config, dict):
        return None
    if not _enabled(config, True):
        return []
    return str_list(config.get("allowed_tools"))


def _server_key(server: dict[str, Any]) -> str:
    name = server.get("name")
    return name if isinstance(name, str) else ""


def server_tools(body: dict[str, Any]) -> dict[str, list[str] | None]:
    """Each MCP server's name -> the tools the model may call on it (None: any it has)."""
    toolsets = {
        t["mcp_server_name"]: t
        for t in dicts(body.get("tools"))
        if t.get("type") == TOOLSET and isinstance(t.get("mcp_server_name"), str)
    }
    out: dict[str, list[str] | None] = {}
    for server in dicts(body.get("mcp_servers")):
        key = _server_key(server)
        toolset = toolsets.pop(key, None)
        out[key] = _toolset_tools(toolset) if toolset else _configured_tools(server)
    for key, toolset in toolsets.items():  # a toolset for a server not offered here
        out[key] = _toolset_tools(toolset)
    return out


def messages_offered(body: dict[str, Any]) -> list[str]:
    names: list[str] = []
    tools = body.get("tools")
    toolsets = False
    if isinstance(tools, list):
        for tool in tools:
            if isinstance(tool, dict):
                if tool.get("type") == TOOLSET:
                    toolsets = True
                elif isinstance(tool.get("name"), str):
                    names.append(tool["name"])
    if toolsets or "mcp_servers" in body:
        for listed in server_tools(body).values():
            names += [ANY_TOOL] if listed is None else listed
    choice = body.get("tool_choice")
    if (
        isinstance(choice, dict)
        and choice.get("type") == "tool"
        and isinstance(choice.get("name"), str)
    ):
        names.append(choice["name"])
    return names


def messages_without(body: dict[str, Any], drop: set[str]) -> None:
    gone = _narrow_servers(body, drop)
    tools = body.get("tools")
    if isinstance(tools, list):
        kept = [
            t
            for t in tools
            if not isinstance(t, dict)
            or (
                t.get("mcp_server_name") not in gone
                if t.get("type") == TOOLSET
                else t.get("name") not in drop
            )
        ]
        if kept:
            body["tools"] = kept
        else:
            body.pop("tools", None)
    servers = body.get("mcp_servers")
    if isinstance(servers, list):
        body["mcp_servers"] = [
            s for s in servers if not (isinstance(s, dict) and _server_key(s) in gone)
        ]
        if not body["mcp_servers"]:
            body.pop("mcp_servers")
    choice = body.get("tool_choice")
    if "tools" not in body and "mcp_servers" not in body:
        body.pop("tool_choice", None)  # a choice with nothing to choose from is an error
    elif isinstance(choice, dict) and choice.get("type") == "tool" and choice.get("name") in drop:
        auto: dict[str, Any] = {"type": "auto"}
        if "disable_parallel_tool_use" in choice:  # the caller's other wish still holds
            auto["disable_parallel_tool_use"] = choice["disable_parallel_tool_use"]
        body["tool_choice"] = auto


def _narrow_servers(body: dict[str, Any], drop: set[str]) -> set[str]:
    """Disable dropped tools on each MCP server; the names of servers left with none."""
    gone: set[str] = set()
    toolsets = {
        t.get("mcp_server_name"): t for t in dicts(body.get("tools")) if t.get("type") == TOOLSET
    }
    for key, listed in server_tools(body).items():
        if listed is None:
            if ANY_TOOL in drop:
                gone.add(key)
            continue
        kept = [n for n in listed if n not in drop]
        if listed and not kept:
            gone.add(key)
        elif len(kept) < len(listed):
            _disable(body, toolsets.get(key), key, [n for n in listed if n in drop])
    return gone


def _disable(
    body: dict[str, Any], toolset: dict[str, Any] | None, server: str, names: list[str]
) -> None:
    if toolset is not None:
        configs = toolset.get("configs")
        if not isinstance(configs, dict):
            configs = toolset["configs"] = {}
        for name in names:
            old = configs.get(name)
            configs[name] = {**(old if isinstance(old, dict) else {}), "enabled": False}
        return
    for entry in dicts(body.get("mcp_servers")):
        config = entry.get("tool_configuration")
        if _server_key(entry) == server and isinstance(config, dict):
            listed = str_list(config.get("allowed_tools")) or []
            config["allowed_tools"] = [n for n in listed if n not in names]


def server_urls(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(server name, URL) of each remote MCP server the provider is asked to call."""
    return [
        (str(s.get("name")), s["url"])
        for s in dicts(body.get("mcp_servers"))
        if isinstance(s.get("url"), str)
    ]
