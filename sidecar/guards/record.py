"""What the guards of one call found and did, and the errors that stop the call.

Every way a stage reads text (a whole request, a whole reply, a stream, a
tool call) records its hits in the same `Record` and stops a call with the
same errors; the decision log, the span and the metrics read that record
after the call. Keeping it apart lets each of those readers share it without
depending on one another.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from sidecar.call import Text
from sidecar.errors import ErrorKind, SidecarError
from sidecar.guards import redact
from sidecar.guards.config import Guard
from sidecar.guards.finding import Finding

log = logging.getLogger("sidecar.guards")
TOOL_CALL = "tool_call"  # the channel of a tool call's arguments on the output stage


@dataclass(frozen=True, slots=True)
class Hit:
    guard: str
    stage: str
    kind: str
    type: str
    action: str  # block | redact | monitor | error_open | error_closed
    channel: str

    def as_log(self) -> dict[str, str]:
        return {
            "guard": self.guard,
            "stage": self.stage,
            "type": self.type,
            "action": self.action,
            "channel": self.channel,
        }


@dataclass
class Record:
    """What the guards of one call found and did.

    `trace` is how the pipeline wraps a stage in a span: called with the
    stage name, it returns a context manager entered around that stage.
    """

    hits: list[Hit] = field(default_factory=list)
    vault: redact.Vault | None = None
    trace: Callable[[str], AbstractContextManager[None]] | None = None
    # Where, in each of the request's texts (by index), an input guard found something:
    # spans and types only, so an opted-in content log can leave the findings out.
    found: dict[int, list[Finding]] = field(default_factory=dict)

    def stage(self, name: str) -> AbstractContextManager[None]:
        return self.trace(name) if self.trace is not None else contextlib.nullcontext()

    def redactions(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for hit in self.hits:
            if hit.action == "redact":
                out[hit.guard] = out.get(hit.guard, 0) + 1
        return out


@dataclass(frozen=True, slots=True)
class Subject:
    """The facts a guard's scope is matched against."""

    route: str
    tenant: str
    model: str | None
    roles: frozenset[str]


def applicable(guards: Sequence[Guard], subject: Subject) -> list[Guard]:
    return [
        g
        for g in guards
        if g.scope.applies(subject.route, subject.tenant, subject.model, subject.roles)
    ]


def blocked(hit: Hit) -> SidecarError:
    return SidecarError(
        ErrorKind.INVALID_REQUEST,
        f"blocked by guard '{hit.guard}': {hit.kind} finding {hit.type} in the {hit.channel} "
        f"({hit.stage} stage)",
        code="guard_blocked",
        retryable=False,
    )


def guard_failed(guard: Guard, stage: str) -> SidecarError:
    return SidecarError(
        ErrorKind.UNAVAILABLE,
        f"guard '{guard.id}' ({stage} stage) could not run and fails closed",
        code="guard_unavailable",
        retry_after=1,
    )


def _scan(guard: Guard, text: str, record: Record, stage: str, channel: str) -> list[Finding]:
    assert guard.detector is not None
    try:
        return guard.detector.scan(text)
    except Exception:
        log.exception("guard %s failed", guard.id)
        action = "error_closed" if guard.fail_closed else "error_open"
        record.hits.append(Hit(guard.id, stage, guard.kind, "GUARD_ERROR", action, channel))
        if guard.fail_closed:
            raise guard_failed(guard, stage) from None
        return []


def over_limit(guard: Guard, stage: str, channel: str, record: Record) -> None:
    """A call holds more text for `guard` than its `scan_limit`: record it, block if told."""
    action = "block" if guard.over_limit == "block" else "pass"
    hit = Hit(guard.id, stage, guard.kind, "SCAN_LIMIT", action, channel)
    record.hits.append(hit)
    if action == "block":
        raise SidecarError(
            ErrorKind.INVALID_REQUEST,
            f"blocked by guard '{guard.id}': the {channel} text is longer than the "
            f"{guard.scan_limit} characters it reads in one call ({stage} stage); send less "
            "text, or raise the guard's scan_limit",
            code="guard_blocked",
            retryable=False,
        )


def log_entries(record: Record | None) -> list[dict[str, str]]:
    return [h.as_log() for h in record.hits] if record else []


def log_content(texts: Sequence[Text], record: Record | None) -> list[dict[str, str]]:
    """The request's texts for an opted-in content log, without what input guards found.

    A blocked secret must not land on disk in the one place meant for auditors, nor a
    redacted value the model never saw: every finding, whatever its guard's action,
    is written as its type (`[GENERIC_SECRET]`).
    """
    found = record.found if record is not None else {}
    out: list[dict[str, str]] = []
    for i, t in enumerate(texts):
        text = t.text
        if i in found:
            text = redact.apply(text, [(f, "placeholder") for f in found[i]])
        out.append({"channel": t.channel, "text": text})
    return out
