"""Egress guards over the tool servers a request asks the provider to call.

A remote MCP server offered to the provider is reached by the provider, with
whatever token the request gives it, on the model's behalf: its URL is a
tool's destination like a URL in a tool call's arguments, so the tool
stage's egress guards read it before the request is forwarded. A `block`
guard refuses the call; `monitor` (and `redact`, which cannot rewrite a
destination) records the finding.
"""

from __future__ import annotations

from collections.abc import Sequence

from sidecar.guards.config import GuardSet
from sidecar.guards.egress import EgressChecker
from sidecar.guards.stage import Hit, Record, Subject, applicable, blocked


def check_server_urls(
    gs: GuardSet, servers: Sequence[tuple[str, str]], subject: Subject, record: Record
) -> None:
    guards = [g for g in applicable(gs.tool, subject) if isinstance(g.detector, EgressChecker)]
    if not guards:
        return
    with record.stage("tool"):
        for label, url in servers:
            channel = f"tool server {label}"
            for guard in guards:
                assert isinstance(guard.detector, EgressChecker)
                verdict = guard.detector.check(url)
                if verdict is None:
                    continue
                hit = Hit(guard.id, "tool", guard.kind, verdict, guard.action, channel)
                record.hits.append(hit)
                if guard.action == "block":
                    raise blocked(hit)
