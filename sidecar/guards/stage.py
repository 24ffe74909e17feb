"""Running the guards of a stage over a call, and acting on what they find.

The pipeline calls `check_input` before forwarding, `check_output` on a
plain reply, `OutputFilter` on each streamed text, and `check_tool_call` on
each tool call the model proposes. Each guard's findings lead to its action:
`block` stops the call with an error that names the guard and the finding
type (never the content), `redact` rewrites the text with the guard's
operator, `monitor` only records. A guard that raises follows its fail mode:
closed blocks the call, open lets it pass; both are recorded.

What happened is kept in a `Record` for the decision log, the span, the
findings counter and the `x-sidecar-redacted` header; it holds guard ids,
finding types, channels and counts, never matched text.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson

from sidecar.call import Text
from sidecar.errors import ErrorKind, SidecarError
from sidecar.guards import json_text, offload, redact, webhook
from sidecar.guards.config import OUTPUT_CHANNELS, Guard, GuardSet
from sidecar.guards.finding import Finding
from sidecar.guards.rules import SizeDetector, ToolSchemaDetector
from sidecar.guards.stream import StreamScanner

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


def _bounded(guard: Guard, texts: Sequence[Text], record: Record, stage: str) -> list[str]:
    """The texts as far as the guard reads them: all of them, or up to its `scan_limit`."""
    bodies = [t.text for t in texts]
    if sum(map(len, bodies)) <= guard.scan_limit:
        return bodies
    left = guard.scan_limit
    cut: list[str] = []
    crossed = ""
    for text, body in zip(texts, bodies, strict=True):
        if len(body) > left and not crossed:
            crossed = text.channel
        cut.append(body[:left])
        left -= len(cut[-1])
    over_limit(guard, stage, crossed, record)
    return cut


def _scan_each(
    guard: Guard, bodies: Sequence[str], texts: Sequence[Text], record: Record, stage: str
) -> list[list[Finding]]:
    out: list[list[Finding]] = []
    for body, text in zip(bodies, texts, strict=True):
        out.append(_scan(guard, body, record, stage, text.channel))
        if out[-1] and guard.action == "block":
            break  # the call stops at this finding: the texts after it are not read
    return out


async def _judge(
    guards: Iterable[Guard],
    texts: Sequence[Text],
    record: Record,
    stage: str,
    *,
    check_channel: bool,
) -> dict[int, list[tuple[Finding, redact.Operator]]]:
    """Run the guards; raise on a block; return, per text, the redactions to apply.

    Each guard reads at most its `scan_limit` characters of the call, and a large
    read runs off the event loop (`offload`). A small one, the usual case, is
    called here directly: no closure and no coroutine for a hand-over that does
    not happen.
    """
    edits: dict[int, list[tuple[Finding, redact.Operator]]] = {}
    for guard in guards:
        if guard.detector is None:
            continue
        if isinstance(guard.detector, SizeDetector):
            _judge_size(guard, guard.detector, texts, record, stage, check_channel=check_channel)
            continue
        if check_channel:
            wanted = guard.channels
            picked = [i for i, t in enumerate(texts) if t.channel in wanted]
            if not picked:
                continue
            read = [texts[i] for i in picked]
        else:
            picked = list(range(len(texts)))
            read = list(texts)
        bodies = _bounded(guard, read, record, stage)
        size = sum(map(len, bodies))
        if offload.inline(size):
            found = _scan_each(guard, bodies, read, record, stage)
        else:
            found = await offload.run(size, partial(_scan_each, guard, bodies, read, record, stage))
        for i, text, findings in zip(picked, read, found, strict=False):
            if not findings:
                continue
            if guard.action == "redact" and text.channel == TOOL_CALL:
                stretches = json_text.string_stretches(text.text)
                findings = [f for f in findings if stretches.holds(f.start, f.end)]
            for finding in findings:
                hit = Hit(guard.id, stage, guard.kind, finding.type, guard.action, text.channel)
                record.hits.append(hit)
                if stage == "input":
                    record.found.setdefault(i, []).append(finding)
                if guard.action == "block":
                    raise blocked(hit)
                if guard.action == "redact":
                    edits.setdefault(i, []).append((finding, guard.operator))
    return edits


async def _webhooks(
    guards: Sequence[Guard],
    texts: Sequence[Text],
    subject: Subject,
    record: Record,
    stage: str,
    edits: dict[int, list[tuple[Finding, redact.Operator]]],
    *,
    check_channel: bool,
) -> None:
    """Ask each webhook guard for a verdict on the texts it reads, and act on it."""
    context = {
        "route": subject.route,
        "tenant": subject.tenant,
        "model": subject.model,
        "roles": sorted(subject.roles),
    }
    for guard in guards:
        picked = [
            i for i, t in enumerate(texts) if not check_channel or t.channel in guard.channels
        ]
        if not picked:
            continue
        try:
            verdict = await webhook.ask(guard, stage, [texts[i] for i in picked], context)
        except webhook.WebhookError as exc:
            log.warning("webhook guard %s: %s", guard.id, exc)
            action = "error_closed" if guard.fail_closed else "error_open"
            record.hits.append(Hit(guard.id, stage, "webhook", "GUARD_ERROR", action, "webhook"))
            if guard.fail_closed:
                raise guard_failed(guard, stage) from None
            continue
        if verdict.action == "pass":
            continue
        found = verdict.findings or [(0, Finding("webhook", "WEBHOOK", 0, 0, 1.0, guard.id))]
        for index, finding in found:
            text = texts[picked[min(index, len(picked) - 1)]]
            taken = guard.action
            if guard.action != "monitor" and verdict.action == "redact":
                taken = "redact"
            hit = Hit(guard.id, stage, "webhook", finding.type, taken, text.channel)
            record.hits.append(hit)
            if stage == "input" and finding.end > finding.start:
                record.found.setdefault(picked[min(index, len(picked) - 1)], []).append(finding)
            if taken == "block" and verdict.action == "block":
                raise blocked(hit)
            if taken == "redact" and finding.end > finding.start:
                edits.setdefault(picked[index], []).append((finding, guard.operator))


def _judge_size(
    guard: Guard,
    detector: SizeDetector,
    texts: Sequence[Text],
    record: Record,
    stage: str,
    *,
    check_channel: bool,
) -> None:
    """A size guard weighs the texts it reads together; it blocks or records, never cuts."""
    read = [t for t in texts if not check_channel or t.channel in guard.channels]
    if not read or not detector.over(sum(len(t.text) for t in read)):
        return
    hit = Hit(guard.id, stage, guard.kind, "SIZE_LIMIT", guard.action, read[-1].channel)
    record.hits.append(hit)
    if guard.action == "block":
        raise blocked(hit)


async def check_input(
    gs: GuardSet, texts: Sequence[Text], subject: Subject, record: Record
) -> bool:
    """Input guards over the call's texts; True when a text was rewritten in the body."""
    guards = applicable(gs.input, subject)
    if not guards or not texts:
        return False
    edits = await _judge(guards, texts, record, "input", check_channel=True)
    _apply_input(gs, texts, edits, record)
    hooks = [g for g in guards if g.webhook is not None]
    if hooks:
        # Webhooks see the texts as they will be forwarded: what a redact guard took out
        # never reaches an outside classifier either.
        current = [Text(t.channel, t.holder[t.key], t.holder, t.key) for t in texts]
        hook_edits: dict[int, list[tuple[Finding, redact.Operator]]] = {}
        await _webhooks(hooks, current, subject, record, "input", hook_edits, check_channel=True)
        _apply_input(gs, current, hook_edits, record)
        return bool(edits or hook_edits)
    return bool(edits)


def _apply_input(
    gs: GuardSet,
    texts: Sequence[Text],
    edits: dict[int, list[tuple[Finding, redact.Operator]]],
    record: Record,
) -> None:
    for i, changes in edits.items():
        if record.vault is None and any(op == "tokenize" for _, op in changes):
            record.vault = redact.Vault()
        _rewrite(texts[i], changes, salt=gs.salt, vault=record.vault)


def _rewrite(
    text: Text,
    changes: list[tuple[Finding, redact.Operator]],
    *,
    salt: bytes,
    vault: redact.Vault | None = None,
) -> None:
    """Apply the redactions to one text and write the result back into its body.

    A place that holds parsed JSON (tool input given as an object) may adjust the
    text and spans first, so the result still parses (`prepare_edits`).
    """
    source = text.text
    if text.channel == TOOL_CALL:  # arguments stay JSON of the same types
        changes = json_text.in_strings(source, changes)
    prepare = getattr(text.holder, "prepare_edits", None)
    if prepare is not None:
        source, changes = prepare(source, changes)
    text.replace(redact.apply(source, changes, salt=salt, vault=vault))


async def check_output(
    gs: GuardSet,
    texts: Sequence[Text],
    calls: Sequence[tuple[str, Text]],
    subject: Subject,
    record: Record,
) -> bool:
    """Output guards over a whole reply's texts, tool guards over its tool calls.

    Returns True when the reply's body was rewritten (redactions, or tokens
    from the call's vault turned back into the caller's values).
    """
    changed = False
    guards = applicable(gs.output, subject)
    every = [*texts, *(t for _, t in calls)]
    if guards and every:
        edits = await _judge(guards, every, record, "output", check_channel=True)
        hooks = [g for g in guards if g.webhook is not None]
        if hooks:
            await _webhooks(hooks, every, subject, record, "output", edits, check_channel=True)
        for i, changes in edits.items():
            _rewrite(every[i], changes, salt=gs.salt)
        changed = bool(edits)
    if record.vault is not None:
        for text in every:
            current = text.holder[text.key]
            restored = record.vault.restore(current)
            if restored != current:
                text.replace(restored)
                changed = True
    # Tool guards read the arguments as the agent will get them: tokens restored.
    for name, text in calls:
        arguments = text.holder[text.key]
        await offload.run(
            len(arguments), partial(check_tool_call, gs, name, arguments, subject, record)
        )
    return changed


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


class OutputFilter:
    """The output stage for a stream: one scanner per text channel of the reply.

    Channels are named by the adapter ("choice 0", "tool call 0:1", ...).
    `feed` returns the text that may go to the caller now (redacted, tokens
    restored); `end` returns the rest of a channel. Both raise `SidecarError`
    when a `block` guard finds something, before any of it is released.
    """

    def __init__(self, gs: GuardSet, subject: Subject, record: Record) -> None:
        self._gs = gs
        self._subject = subject
        self._record = record
        # Webhooks need a whole text; on streams they are not consulted (docs/bundle.md).
        # Size guards count the whole stream, not a window of it.
        scoped = [g for g in applicable(gs.output, subject) if g.detector is not None]
        self._sizes = [g for g in scoped if isinstance(g.detector, SizeDetector)]
        scanning = [g for g in scoped if not isinstance(g.detector, SizeDetector)]
        # The guards that read each kind of channel: the model's text, or tool-call arguments.
        self._by_label = {
            label: [g for g in scanning if label in g.channels] for label in OUTPUT_CHANNELS
        }
        self._redacts_json = any(g.action == "redact" for g in self._by_label[TOOL_CALL])
        self._seen: dict[str, int] = {}  # characters streamed, per channel kind
        # Past its scan_limit a guard stops reading the stream (or has blocked it).
        self._bounds = min((g.scan_limit for g in scanning), default=0)
        self._unread: set[str] = set()
        self._scanners: dict[str, StreamScanner] = {}
        self._restorers: dict[str, redact.StreamRestorer] = {}
        self._tool_args: dict[str, list[str]] = {}
        self._json: dict[str, json_text.JsonStrings] = {}

    @property
    def active(self) -> bool:
        return (
            any(self._by_label.values())
            or bool(self._sizes)
            or self._record.vault is not None
            or bool(self._gs.tool)
        )

    def _bound(self, label: str) -> None:
        """Stop each guard that has now read more of the stream than its scan_limit."""
        for guard in self._by_label[label]:
            if guard.id in self._unread:
                continue
            seen = sum(n for read, n in self._seen.items() if read in guard.channels)
            if seen > guard.scan_limit:
                self._unread.add(guard.id)
                over_limit(guard, "output", label, self._record)

    def _count(self, label: str, piece: str) -> None:
        for guard in self._sizes:
            assert isinstance(guard.detector, SizeDetector)
            seen = sum(n for read, n in self._seen.items() if read in guard.channels)
            if label in guard.channels and guard.detector.over(seen):
                hit = Hit(guard.id, "output", guard.kind, "SIZE_LIMIT", guard.action, label)
                self._sizes = [g for g in self._sizes if g is not guard]  # once per stream
                self._record.hits.append(hit)
                if guard.action == "block":
                    raise blocked(hit)

    def _scan_with(self, guards: list[Guard], text: str) -> list[Finding]:
        out: list[Finding] = []
        for guard in guards:
            if guard.id in self._unread:
                continue
            for f in _scan(guard, text, self._record, "output", "stream"):
                out.append(Finding(f.kind, f.type, f.start, f.end, f.confidence, guard.id))
        return out

    def _scanner(self, channel: str, guards: list[Guard]) -> StreamScanner:
        scanner = self._scanners.get(channel)
        if scanner is None:
            hold = max((g.hold for g in guards), default=0)
            scanner = StreamScanner(partial(self._scan_with, guards), extra_hold=hold)
            self._scanners[channel] = scanner
        return scanner

    def _apply(self, channel: str, text: str, findings: list[Finding]) -> str:
        edits: list[tuple[Finding, redact.Operator]] = []
        # Recorded as in a plain reply: the model's text, or a tool call's arguments.
        label = _label(channel)
        stretches = None
        if label == TOOL_CALL and self._redacts_json:
            tracker = self._json.get(channel)
            if tracker is None:
                tracker = self._json[channel] = json_text.JsonStrings()
            stretches = tracker.feed(text)
        for f in findings:
            guard = self._gs.by_id[f.source]
            if (
                guard.action == "redact"
                and stretches is not None
                and not stretches.holds(f.start, f.end)
            ):
                continue  # outside a JSON string: the arguments must stay valid
            hit = Hit(guard.id, "output", guard.kind, f.type, guard.action, label)
            self._record.hits.append(hit)
            if guard.action == "block":
                raise blocked(hit)
            if guard.action == "redact":
                edits.append((f, guard.operator))
        if edits:
            text = redact.apply(text, edits, salt=self._gs.salt)
        vault = self._record.vault
        if vault is not None:
            restorer = self._restorers.get(channel)
            if restorer is None:
                restorer = self._restorers[channel] = redact.StreamRestorer(vault)
            text = restorer.feed(text)
        return text

    def feed(self, channel: str, piece: str, *, tool: str | None = None) -> str:
        label = _label(channel)
        self._seen[label] = self._seen.get(label, 0) + len(piece)
        if self._sizes:
            self._count(label, piece)
        if tool is not None:
            self._tool_args.setdefault(channel, []).append(piece)
        guards = self._by_label[label]
        if not guards:
            return self._apply(channel, piece, [])
        release = self._scanner(channel, guards).feed(piece)
        # Before releasing anything: an over-limit block must stop this piece too.
        if sum(self._seen.values()) > self._bounds:
            self._bound(label)
        return self._apply(channel, release.text, release.findings)

    def end(self, channel: str, *, tool: str | None = None) -> str:
        scanner = self._scanners.pop(channel, None)
        out = ""
        if scanner is not None:
            release = scanner.flush()
            out = self._apply(channel, release.text, release.findings)
        restorer = self._restorers.pop(channel, None)
        if restorer is not None:
            out += restorer.flush()
        self._json.pop(channel, None)
        if tool is not None:
            arguments = "".join(self._tool_args.pop(channel, []))
            if self._record.vault is not None:  # as the agent will get them
                arguments = self._record.vault.restore(arguments)
            check_tool_call(self._gs, tool, arguments, self._subject, self._record)
        return out

    def open_channels(self) -> list[str]:
        return [*self._scanners, *(c for c in self._restorers if c not in self._scanners)]


def _label(channel: str) -> str:
    """A stream channel ("choice 0", "tool call 0:1", "args 2") as a reply's channel."""
    return TOOL_CALL if channel.startswith(("tool call", "args")) else "assistant"


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
