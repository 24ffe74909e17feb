"""The tool stage: the guards over one tool call's arguments, which never rewrite them.

A tool call is judged the same way whether it came in a whole reply or was
put together from a stream, so both the reply check and the stream filter
call it from here.
"""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.guards.config import Guard, GuardSet
from sidecar.guards.record import Hit, Record, Subject, _scan, applicable, blocked, over_limit
from sidecar.guards.rules import ToolSchemaDetector


def check_tool_call(
    gs: GuardSet, name: str, arguments: str, subject: Subject, record: Record
) -> None:
    """Tool guards over one tool call's arguments; raises when one blocks.

    Tool-call arguments are never rewritten (a changed argument is a
    different call): a finding from a `redact` guard is recorded and the call
    passes, so only `block` and `monitor` make sense here.
    """
    guards = [g for g in applicable(gs.tool, subject) if g.reads_tool(name)]
    if not guards:
        return
    with record.stage("tool"):
        _check_tool_call(guards, name, arguments, record)


def _check_tool_call(guards: list[Guard], name: str, arguments: str, record: Record) -> None:
    parsed: Any = None
    for guard in guards:
        read = arguments
        if len(read) > guard.scan_limit:
            over_limit(guard, "tool", f"tool call {name}", record)
            if isinstance(guard.detector, ToolSchemaDetector):
                continue  # a schema cannot be checked on part of the arguments
            read = read[: guard.scan_limit]
        if isinstance(guard.detector, ToolSchemaDetector):
            if parsed is None:
                try:
                    parsed = orjson.loads(arguments) if arguments else {}
                except orjson.JSONDecodeError:
                    parsed = arguments
            findings = guard.detector.check(name, parsed)
        else:
            findings = _scan(guard, read, record, "tool", f"tool call {name}")
        for finding in findings:
            hit = Hit(guard.id, "tool", guard.kind, finding.type, guard.action, f"tool call {name}")
            record.hits.append(hit)
            if guard.action == "block":
                raise blocked(hit)
