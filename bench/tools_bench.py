"""Tool governance cost per call: reading every tool-bearing field, deciding, rewriting.

Measures what the proxy does for a request's tools — the body parse is the
adapter's and is left out — on a bundle compiled by the real loader (one role
allowing `search` and `calc*`), with the decision cache warm as in steady
state:

- request side: list the offered tools from every field that can carry one,
  authorize each name (`ToolGate`), and, when one is forbidden, remove it from
  every field and re-encode the body;
- reply side: find the tools a complete reply calls (the adapter's reply view, then
  the gate).

Run: .venv/bin/python bench/tools_bench.py [--calls N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sidecar.adapters.anthropic import ADAPTER as ANTHROPIC
from sidecar.adapters.base import Adapter
from sidecar.adapters.openai import ADAPTER as OPENAI
from sidecar.authz.context import CallContext
from sidecar.authz.tools import ToolGate
from sidecar.bundle.compile import load_snapshot
from sidecar.bundle.snapshot import Snapshot
from sidecar.identity.principal import Principal

PRINCIPAL = Principal("bot", "acme", "bot", roles=frozenset({"analyst"}), via="pod")
MESSAGES = [{"role": "user", "content": "find the report from last week and sum its totals"}]
FN = {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}
SHELL = {"type": "function", "function": {"name": "shell", "parameters": {"type": "object"}}}
MCP = {
    "type": "mcp",
    "server_label": "docs",
    "server_url": "https://mcp.example.com/sse",
    "allowed_tools": ["search", "calc_sum"],
}

REQUESTS: list[tuple[str, Adapter, str, dict[str, Any]]] = [
    ("chat, no tools (fast path)", OPENAI, "/v1/chat/completions", {"messages": MESSAGES}),
    (
        "chat, 2 tools allowed",
        OPENAI,
        "/v1/chat/completions",
        {"messages": MESSAGES, "tools": [FN, {**FN, "function": {"name": "calc"}}]},
    ),
    (
        "chat, 1 of 2 tools removed",
        OPENAI,
        "/v1/chat/completions",
        {"messages": MESSAGES, "tools": [FN, SHELL]},
    ),
    (
        "chat, legacy functions, 1 of 2 removed",
        OPENAI,
        "/v1/chat/completions",
        {
            "messages": MESSAGES,
            "functions": [FN["function"], SHELL["function"]],
            "web_search_options": {},
        },
    ),
    (
        "responses, hosted + MCP server",
        OPENAI,
        "/v1/responses",
        {"input": "x", "tools": [{"type": "web_search_preview"}, MCP]},
    ),
    (
        "anthropic, tool + MCP server",
        ANTHROPIC,
        "/v1/messages",
        {
            "max_tokens": 10,
            "messages": MESSAGES,
            "tools": [{"name": "search", "input_schema": {}}],
            "mcp_servers": [
                {
                    "type": "url",
                    "name": "docs",
                    "url": "https://mcp.example.com/sse",
                    "tool_configuration": {"allowed_tools": ["search", "shell"]},
                }
            ],
        },
    ),
]

REPLIES: list[tuple[str, Adapter, str, dict[str, Any]]] = [
    (
        "chat reply, text only",
        OPENAI,
        "/v1/chat/completions",
        {"choices": [{"message": {"role": "assistant", "content": "The totals are 12 and 30."}}]},
    ),
    (
        "chat reply, one tool call",
        OPENAI,
        "/v1/chat/completions",
        {
            "choices": [
                {
                    "message": {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "search", "arguments": "{}"},
                            }
                        ],
                    }
                }
            ]
        },
    ),
    (
        "responses reply, MCP + function calls",
        OPENAI,
        "/v1/responses",
        {
            "output": [
                {"type": "mcp_call", "name": "search", "server_label": "docs"},
                {"type": "function_call", "name": "calc", "arguments": "{}"},
            ]
        },
    ),
    (
        "anthropic reply, mcp_tool_use",
        ANTHROPIC,
        "/v1/messages",
        {
            "content": [
                {"type": "mcp_tool_use", "name": "search", "server_name": "docs", "input": {}}
            ]
        },
    ),
]


def write_bundle(root: Path) -> None:
    doc = {
        "apiVersion": "sidecar/v1",
        "revision": "tools-bench",
        "identity": {"pod": {"roles": ["analyst"]}},
        "roles": {
            "analyst": [
                {"actions": ["llm.*"]},
                {"actions": ["tool.call"], "tools": ["search", "calc*", "web_search"]},
            ]
        },
    }
    (root / "bundle.yaml").write_text(yaml.safe_dump(doc))


def govern(snapshot: Snapshot, adapter: Adapter, path: str, raw: bytes) -> Callable[[], object]:
    def once() -> object:
        call = adapter.parse(path, raw)
        if not adapter.offers_tools(path, call.body):
            return None
        names = call.tool_names
        gate = ToolGate(snapshot.authorizer, PRINCIPAL, CallContext(call, PRINCIPAL))
        forbidden = gate.forbidden(names)
        if forbidden:
            adapter.without_tools(path, call.body, set(forbidden))
            call.raw = orjson.dumps(call.body)
        return adapter.tool_urls(path, call.body)

    return once


def parse_only(adapter: Adapter, path: str, raw: bytes) -> Callable[[], object]:
    return lambda: adapter.parse(path, raw).model


def timed(fn: Callable[[], object], calls: int) -> list[float]:
    for _ in range(200):
        fn()
    samples: list[float] = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


def p50_p99(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        write_bundle(Path(tmp))
        snapshot = load_snapshot(tmp)
    print("| request | p50 µs | p99 µs | mean µs |")
    print("|---|---:|---:|---:|")
    for label, adapter, path, body in REQUESTS:
        raw = orjson.dumps({"model": "gpt-4o", **body})
        base = statistics.median(timed(parse_only(adapter, path, raw), args.calls))
        samples = [s - base for s in timed(govern(snapshot, adapter, path, raw), args.calls)]
        p50, p99 = p50_p99(samples)
        print(f"| {label} | {p50:.1f} | {p99:.1f} | {statistics.fmean(samples):.1f} |")
    print()
    print("| reply | p50 µs | p99 µs | mean µs |")
    print("|---|---:|---:|---:|")
    for label, adapter, path, body in REPLIES:
        raw = orjson.dumps(body)
        call = adapter.parse(path, orjson.dumps({"model": "gpt-4o", "messages": MESSAGES}))
        gate = ToolGate(snapshot.authorizer, PRINCIPAL, CallContext(call, PRINCIPAL))
        samples = timed(
            lambda: gate.forbidden(adapter.reply_view(path, raw).tools),  # noqa: B023
            args.calls,
        )
        p50, p99 = p50_p99(samples)
        print(f"| {label} | {p50:.1f} | {p99:.1f} | {statistics.fmean(samples):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
