"""The output stage for a streamed reply, one piece at a time.

A stream must be judged before any of it reaches the caller, with text held
back where a finding could still be forming; that state per channel is what
sets it apart from checking a whole reply at once, and it is most of the
output stage's code.
"""

from __future__ import annotations

from functools import partial

from sidecar.guards import json_text, redact
from sidecar.guards.config import OUTPUT_CHANNELS, Guard, GuardSet
from sidecar.guards.finding import Finding
from sidecar.guards.record import (
    TOOL_CALL,
    Hit,
    Record,
    Subject,
    _scan,
    applicable,
    blocked,
    over_limit,
)
from sidecar.guards.rules import SizeDetector
from sidecar.guards.stream import StreamScanner
from sidecar.guards.tool_calls import check_tool_call


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
