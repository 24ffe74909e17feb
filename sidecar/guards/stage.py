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

from collections.abc import Iterable, Sequence
from functools import partial

from sidecar.call import Text
from sidecar.guards import json_text, offload, redact, webhook
from sidecar.guards.config import Guard, GuardSet
from sidecar.guards.finding import Finding
from sidecar.guards.output_stream import OutputFilter
from sidecar.guards.record import (
    TOOL_CALL,
    Hit,
    Record,
    Subject,
    _scan,
    applicable,
    blocked,
    guard_failed,
    log,
    log_content,
    log_entries,
    over_limit,
)
from sidecar.guards.rules import SizeDetector
from sidecar.guards.tool_calls import check_tool_call

__all__ = [
    "TOOL_CALL",
    "Hit",
    "OutputFilter",
    "Record",
    "Subject",
    "applicable",
    "blocked",
    "check_input",
    "check_output",
    "check_tool_call",
    "guard_failed",
    "log_content",
    "log_entries",
    "over_limit",
]


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
