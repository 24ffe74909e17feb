"""The tool-check chain, driven by a fake surface: identify → authorize → tool guards → limits
→ account, with no forward. The next surfaces (MCP, HTTP tools, gRPC, ext_authz) build on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sidecar.bundle.compile import load_snapshot
from sidecar.bundle.store import Generation
from sidecar.call import Call, Resource, Text, ToolCall
from sidecar.chain.exchange import Exchange, Verdict
from sidecar.errors import ErrorKind
from sidecar.identity.principal import PodIdentity
from sidecar.names import fold
from sidecar.pipeline import Pipeline
from sidecar.telemetry.decision_log import DecisionLog
from sidecar.telemetry.setup import Telemetry, setup_telemetry

BUNDLE: dict[str, Any] = {
    "apiVersion": "sidecar/v1",
    "revision": "tools-1",
    "roles": {"agent": [{"actions": ["tool.call"], "tools": ["search", "fetch", "delete_repo"]}]},
    "policies": ["policies/*.cedar"],
    "guards": {"tool": [{"id": "egress", "kind": "egress", "tools": ["fetch"]}]},
    "limits": [
        {"id": "searches", "match": {"tools": ["search"]}, "requests": {"limit": 2, "per": "1m"}}
    ],
}
FORBID = """
@id("no-repo-deletes")
forbid(principal, action == Sidecar::Action::"tool.call", resource)
when { resource.name == "delete_repo" };
"""


class FakeToolSurface:
    """What a tool surface does: turn its request into a `tool.call` and render the verdict."""

    def __init__(self, pipeline: Pipeline, gen: Generation) -> None:
        self.pipeline = pipeline
        self.gen = gen
        self.count = 0

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Verdict:
        self.count += 1
        args = orjson.dumps(arguments).decode()
        tool = ToolCall(name, args, id=f"call-{self.count}")
        call = Call(
            surface="fake-tools",
            action="tool.call",
            resource=Resource("Tool", fold(name)),
            operation="execute_tool",
            headers={"user-agent": "fake-tool-surface"},
            extract_texts=lambda body: [Text("tool_call", args)],
            extract_tools=lambda body: ([name], [tool]),
        )
        ex = Exchange(f"decision-{self.count}", self.gen.snapshot.revision, 0.0)
        return await self.pipeline.check(self.gen, call, ex)


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def telemetry(spans: InMemorySpanExporter) -> Iterator[Telemetry]:
    t = setup_telemetry("none", span_processors=[SimpleSpanProcessor(spans)])
    yield t
    t.shutdown()


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "decisions.jsonl"


@pytest.fixture
def surface(tmp_path: Path, telemetry: Telemetry, log_path: Path) -> Iterator[FakeToolSurface]:
    root = tmp_path / "bundle"
    (root / "policies").mkdir(parents=True)
    (root / "bundle.yaml").write_text(yaml.safe_dump(BUNDLE))
    (root / "policies" / "forbid.cedar").write_text(FORBID)
    gen = Generation(load_snapshot(root), transports={})
    log = DecisionLog(str(log_path))
    pipeline = Pipeline(telemetry, PodIdentity("agent-7", "acme"), log)
    yield FakeToolSurface(pipeline, gen)
    log.close()


async def settled(surface: FakeToolSurface) -> None:
    """Completion hooks run in the loop's next turn; let them."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def log_lines(surface: FakeToolSurface, path: Path) -> list[dict[str, Any]]:
    surface.pipeline.decision_log.close()
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def by_name(spans: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans.get_finished_spans()}


async def test_an_allowed_tool_call_names_its_policy_with_a_span_per_stage_and_a_log_line(
    surface: FakeToolSurface, spans: InMemorySpanExporter, log_path: Path
) -> None:
    verdict = await surface.call_tool("fetch", {"url": "https://docs.example.com/page"})
    await settled(surface)
    assert verdict.allowed and verdict.error is None
    assert verdict.policies == ("role:agent[0]",)
    assert verdict.headers is not None and verdict.headers["x-sidecar-decision-id"] == "decision-1"
    found = by_name(spans)
    root = found["execute_tool fetch"]
    assert {"identity.resolve", "policy.authorize", "guard.tool", "limits.check"} <= set(found)
    for stage in ("identity.resolve", "policy.authorize", "guard.tool", "limits.check"):
        parent = found[stage].parent
        assert parent is not None and parent.span_id == root.context.span_id, stage
    assert root.attributes is not None
    assert root.attributes["gen_ai.tool.name"] == "fetch"
    assert root.attributes["sidecar.decision"] == "allow"
    assert found["guard.tool"].attributes == {
        "sidecar.guard.findings": 0,
        "sidecar.guard.outcome": "pass",
    }
    assert found["limits.check"].attributes == {"sidecar.limit.result": "none"}
    [line] = log_lines(surface, log_path)
    assert line["action"] == "tool.call"
    assert line["resource"] == {"type": "Tool", "id": "fetch"}
    assert line["result"] == "allow" and line["policies"] == ["role:agent[0]"]
    assert line["principal"] == "agent-7" and line["tenant"] == "acme"
    assert line["status"] == 200 and line["error_type"] is None
    assert line["decision_id"] == "decision-1" and line["bundle_revision"] == "tools-1"


async def test_a_tool_no_policy_permits_is_denied_by_default(
    surface: FakeToolSurface, spans: InMemorySpanExporter, log_path: Path
) -> None:
    verdict = await surface.call_tool("shell", {"cmd": "ls"})
    await settled(surface)
    assert not verdict.allowed and verdict.policies == ()
    assert verdict.error is not None and verdict.error.kind is ErrorKind.FORBIDDEN
    assert "no policy permits tool.call on tool 'shell'" in verdict.error.message
    assert "denies by default" in verdict.error.message
    found = by_name(spans)
    assert "guard.tool" not in found and "limits.check" not in found  # the chain stopped
    assert found["policy.authorize"].attributes == {"sidecar.decision": "deny"}
    [line] = log_lines(surface, log_path)
    assert line["result"] == "deny" and line["status"] == 403
    assert line["resource"] == {"type": "Tool", "id": "shell"}


async def test_a_forbid_policy_decides_and_is_named(
    surface: FakeToolSurface, log_path: Path
) -> None:
    verdict = await surface.call_tool("delete_repo", {"repo": "prod"})
    await settled(surface)
    assert not verdict.allowed and verdict.policies == ("no-repo-deletes",)
    assert verdict.error is not None
    assert "denied by policy 'no-repo-deletes'" in verdict.error.message
    [line] = log_lines(surface, log_path)
    assert line["policies"] == ["no-repo-deletes"] and line["result"] == "deny"


async def test_a_tool_guard_blocks_the_arguments(
    surface: FakeToolSurface, spans: InMemorySpanExporter, log_path: Path
) -> None:
    verdict = await surface.call_tool("fetch", {"url": "http://169.254.169.254/latest/meta-data"})
    await settled(surface)
    assert not verdict.allowed
    assert verdict.policies == ("role:agent[0]",)  # authorized, then the guard refused
    assert verdict.error is not None and "guard 'egress'" in verdict.error.message
    guard = by_name(spans)["guard.tool"]
    assert guard.attributes is not None and guard.attributes["sidecar.guard.outcome"] == "block"
    [line] = log_lines(surface, log_path)
    assert line["result"] == "allow" and line["status"] == verdict.error.status
    assert [g["guard"] for g in line["guards"]] == ["egress"]


async def test_limits_count_tool_calls_and_refuse_past_the_limit(
    surface: FakeToolSurface, spans: InMemorySpanExporter, log_path: Path
) -> None:
    verdicts = [await surface.call_tool("search", {"q": f"query {i}"}) for i in range(3)]
    await settled(surface)
    assert [v.allowed for v in verdicts] == [True, True, False]
    refused = verdicts[2]
    assert refused.error is not None and refused.error.kind is ErrorKind.RATE_LIMITED
    assert refused.headers is not None and "x-ratelimit-limit-requests" in refused.headers
    checks = [s for s in spans.get_finished_spans() if s.name == "limits.check"]
    results = [s.attributes["sidecar.limit.result"] for s in checks if s.attributes]
    assert results == ["admitted", "admitted", "rejected"]
    lines = log_lines(surface, log_path)
    assert [ln["limits"]["result"] for ln in lines] == ["admitted", "admitted", "rejected"]
    assert lines[2]["limits"]["rule"] == "searches" and lines[2]["status"] == 429
    # Another tool is not counted against the search rule.
    assert (await surface.call_tool("fetch", {"url": "https://example.com"})).allowed
