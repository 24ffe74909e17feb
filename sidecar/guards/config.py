"""The bundle's `guards` section, compiled once per bundle load.

Everything a request needs is built here: detectors with their patterns
compiled, scopes turned into matchers, and for each stage the guards in
bundle order. A bad pattern, an unknown type or an invalid tool schema is a
bundle problem with the path of the field, so a bundle that would fail at
request time never becomes active.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sidecar.bundle.validate import Problem
from sidecar.guards.finding import Finding
from sidecar.guards.redact import Operator
from sidecar.guards.rules import (
    DenyListDetector,
    PatternDetector,
    PatternRule,
    PatternSyntaxError,
    SizeDetector,
    ToolSchemaDetector,
)
from sidecar.names import fold, glob

Stage = Literal["input", "output", "tool"]
Action = Literal["block", "redact", "monitor"]
STAGES: tuple[Stage, ...] = ("input", "output", "tool")
# Input guards read what the caller and tools wrote, not the system prompt, unless told.
INPUT_CHANNELS = ("system", "user", "assistant", "tool_result", "prompt")
DEFAULT_INPUT_CHANNELS = frozenset({"user", "tool_result", "prompt"})
# Output guards read the model's text and the arguments of the tool calls it proposes.
OUTPUT_CHANNELS = ("assistant", "tool_call")
# A redaction in a tool call's arguments changes the call the agent makes: output guards
# that redact read the model's text only, unless `channels` names `tool_call` too.
DEFAULT_OUTPUT_CHANNELS = frozenset(OUTPUT_CHANNELS)
DEFAULT_REDACT_OUTPUT_CHANNELS = frozenset({"assistant"})
# The most text one guard reads in one call (every text of a request or reply it reads, or
# a whole stream): a detector's worst case is a few milliseconds per kilobyte, so an
# unbounded body would hold a scan for minutes. Beyond it, `over_limit` decides.
DEFAULT_SCAN_LIMIT = 1024 * 1024
OverLimit = Literal["block", "pass"]


class Detector(Protocol):
    def scan(self, text: str) -> list[Finding]: ...


@dataclass(frozen=True, slots=True)
class Scope:
    """Which calls a guard applies to; an empty list means any."""

    routes: tuple[re.Pattern[str], ...] = ()
    tenants: frozenset[str] = frozenset()
    models: tuple[re.Pattern[str], ...] = ()
    roles: frozenset[str] = frozenset()

    def applies(self, route: str, tenant: str, model: str | None, roles: frozenset[str]) -> bool:
        if self.routes and not any(p.fullmatch(route) for p in self.routes):
            return False
        if self.tenants and tenant not in self.tenants:
            return False
        if self.models and (model is None or not any(p.fullmatch(model) for p in self.models)):
            return False
        return not (self.roles and not (self.roles & roles))


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str
    timeout: float
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Guard:
    id: str
    stage: Stage
    kind: str
    action: Action
    operator: Operator
    fail_closed: bool
    scope: Scope
    channels: frozenset[str]
    tools: tuple[re.Pattern[str], ...]  # tool stage: which tools' arguments; empty = all
    detector: Detector | None  # None for a webhook
    webhook: Webhook | None = None
    hold: int = 0  # characters a stream must keep back for this guard's patterns
    scan_limit: int = DEFAULT_SCAN_LIMIT  # characters read per call (see DEFAULT_SCAN_LIMIT)
    over_limit: OverLimit = "block"  # past it: refuse the call, or pass what was not read

    def reads_tool(self, name: str) -> bool:
        return not self.tools or any(p.fullmatch(fold(name)) for p in self.tools)


@dataclass(frozen=True)
class GuardSet:
    input: tuple[Guard, ...] = ()
    output: tuple[Guard, ...] = ()
    tool: tuple[Guard, ...] = ()
    salt: bytes = b""
    by_id: Mapping[str, Guard] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.input or self.output or self.tool)


def _globs(values: Sequence[str] | None) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(fnmatch.translate(v)) for v in values or ())


def _scope(cfg: Mapping[str, Any] | None) -> Scope:
    cfg = cfg or {}
    return Scope(
        routes=_globs(cfg.get("routes")),
        tenants=frozenset(cfg.get("tenants") or ()),
        models=tuple(glob(v) for v in cfg.get("models") or ()),
        roles=frozenset(cfg.get("roles") or ()),
    )


def _patterns(cfg: Mapping[str, Any], path: str, problems: list[Problem]) -> list[PatternRule]:
    rules: list[PatternRule] = []
    for i, item in enumerate(cfg.get("patterns") or ()):
        rules.append(
            PatternRule(
                type=item["type"],
                regex=item["regex"],
                max_length=int(item.get("max_length", 64)),
                ignore_case=bool(item.get("ignore_case", False)),
                where=f"{path}.patterns[{i}]",
            )
        )
    return rules


Made = tuple[Detector | None, int]  # the detector (None: problems were reported) and its hold
Factory = Callable[[Mapping[str, Any], str, list[Problem]], Made]


def _prompt_injection(cfg: Mapping[str, Any], path: str, problems: list[Problem]) -> Made:
    from sidecar.guards.injection import PromptInjectionDetector

    return PromptInjectionDetector(
        threshold=float(cfg.get("threshold", 0.5)), decode=bool(cfg.get("decode", True))
    ), 0


def _secrets(cfg: Mapping[str, Any], path: str, problems: list[Problem]) -> Made:
    from sidecar.guards.secrets import SecretsDetector

    return SecretsDetector(entropy_threshold=float(cfg.get("entropy_threshold", 3.5))), 0


def _pii(cfg: Mapping[str, Any], path: str, problems: list[Problem]) -> Made:
    from sidecar.guards.pii import PiiDetector

    types = cfg.get("types")
    try:
        builtin = PiiDetector(
            types=[t for t in types if t in PiiDetector.TYPES] if types else None,
            phone_regions=tuple(cfg.get("phone_regions") or ("US",)),
        )
    except ValueError as exc:
        problems.append(Problem(f"{path}.phone_regions", str(exc)))
        return None, 0
    rules = _patterns(cfg, path, problems)
    known = set(PiiDetector.TYPES) | {r.type for r in rules}
    for i, t in enumerate(types or ()):
        if t not in known:
            problems.append(
                Problem(
                    f"{path}.types[{i}]",
                    f"unknown PII type {t!r}; built in: {', '.join(PiiDetector.TYPES)}, "
                    "or add a pattern of that type",
                )
            )
    if not rules:
        return builtin, 0
    custom = _compile_patterns(rules, "pii", problems)
    if custom is None:
        return None, 0
    return _Both(builtin, custom), custom.hold


def _compile_patterns(
    rules: list[PatternRule], kind: str, problems: list[Problem]
) -> PatternDetector | None:
    try:
        return PatternDetector(rules, kind=kind)
    except PatternSyntaxError as exc:
        problems.append(Problem(exc.where, exc.message))
        return None


def _pattern(cfg: Mapping[str, Any], path: str, problems: list[Problem]) -> Made:
    detector = _compile_patterns(_patterns(cfg, path, problems), "pattern", problems)
    return detector, detector.hold if detector else 0


def _deny(cfg: Mapping[str, Any], path: str, problems: list[Problem]) -> Made:
    detector = DenyListDetector(cfg.get("words") or (), cfg.get("topics") or {})
    return detector, detector.hold


def _size(cfg: Mapping[str, Any], path: str, problems: list[Problem]) -> Made:
    return SizeDetector(max_chars=cfg.get("max_chars"), max_tokens=cfg.get("max_tokens")), 0


def _egress(cfg: Mapping[str, Any], path: str, problems: list[Problem]) -> Made:
    from sidecar.guards.egress import EgressChecker

    hosts = tuple(cfg.get("allow_hosts") or ())
    bad = [
        i for i, host in enumerate(hosts) if any(c in host for c in "/@ \t") or not host.strip("*.")
    ]
    for i in bad:
        problems.append(
            Problem(
                f"{path}.allow_hosts[{i}]",
                f"{hosts[i]!r} is not a host name or glob (write api.example.com or "
                "*.example.com, without scheme, path or user)",
            )
        )
    if bad:
        return None, 0
    try:
        return EgressChecker(
            allow_hosts=hosts,
            block_private=bool(cfg.get("block_private", True)),
            allow_schemes=tuple(cfg.get("allow_schemes") or ("http", "https")),
        ), 0
    except ValueError as exc:
        problems.append(Problem(f"{path}.allow_hosts", str(exc)))
        return None, 0


def _arg_injection(cfg: Mapping[str, Any], path: str, problems: list[Problem]) -> Made:
    from sidecar.guards.arg_injection import ArgumentInjectionDetector

    try:
        return ArgumentInjectionDetector(types=cfg.get("types")), 0
    except ValueError as exc:
        problems.append(Problem(f"{path}.types", str(exc)))
        return None, 0


def _tool_schema(cfg: Mapping[str, Any], path: str, problems: list[Problem]) -> Made:
    detector = ToolSchemaDetector(cfg.get("schemas") or {}, f"{path}.schemas", problems)
    return detector, 0


FACTORIES: dict[str, Factory] = {
    "prompt_injection": _prompt_injection,
    "secrets": _secrets,
    "pii": _pii,
    "pattern": _pattern,
    "deny": _deny,
    "size": _size,
    "egress": _egress,
    "arg_injection": _arg_injection,
    "tool_schema": _tool_schema,
}
KINDS = (*FACTORIES, "webhook")
COMMON_OPTIONS = frozenset(
    {
        "id",
        "kind",
        "action",
        "redact",
        "fail",
        "channels",
        "tools",
        "scope",
        "scan_limit",
        "over_limit",
    }
)
# What each kind reads besides the common options: anything else is a mistake (often an
# option meant for another kind) that would otherwise make the guard a silent no-op.
OPTIONS: dict[str, frozenset[str]] = {
    "prompt_injection": frozenset({"threshold", "decode"}),
    "secrets": frozenset({"entropy_threshold"}),
    "pii": frozenset({"types", "phone_regions", "patterns"}),
    "pattern": frozenset({"patterns"}),
    "deny": frozenset({"words", "topics"}),
    "size": frozenset({"max_chars", "max_tokens"}),
    "egress": frozenset({"allow_hosts", "block_private", "allow_schemes"}),
    "arg_injection": frozenset({"types"}),
    "tool_schema": frozenset({"schemas"}),
    "webhook": frozenset({"webhook"}),
}


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


class _Both:
    """Two detectors read as one (built-in PII types plus the bundle's own patterns)."""

    __slots__ = ("_a", "_b")

    def __init__(self, a: Detector, b: Detector) -> None:
        self._a, self._b = a, b

    def scan(self, text: str) -> list[Finding]:
        return sorted(self._a.scan(text) + self._b.scan(text), key=lambda f: f.start)


def compile_guards(
    section: Mapping[str, Any] | None, salt: bytes, refused: Collection[str] = ()
) -> tuple[GuardSet, list[Problem]]:
    """`refused`: paths the schema found problems at; guards under them are not compiled."""
    problems: list[Problem] = []
    stages: dict[Stage, list[Guard]] = {s: [] for s in STAGES}
    by_id: dict[str, Guard] = {}
    seen: set[str] = set()
    for stage in STAGES:
        entries = (section or {}).get(stage) or ()
        if f"guards.{stage}" in refused or not isinstance(entries, list):
            continue
        for i, cfg in enumerate(entries):
            path = f"guards.{stage}[{i}]"
            if any(r == path or r.startswith((path + ".", path + "[")) for r in refused):
                continue
            if cfg["id"] in seen:
                problems.append(Problem(f"{path}.id", f"guard id {cfg['id']!r} is used twice"))
                continue
            seen.add(cfg["id"])
            guard = _guard(stage, cfg, path, problems)
            if guard is None:
                continue
            by_id[guard.id] = guard
            stages[stage].append(guard)
    guards = GuardSet(
        input=tuple(stages["input"]),
        output=tuple(stages["output"]),
        tool=tuple(stages["tool"]),
        salt=salt,
        by_id=by_id,
    )
    return guards, problems


def _channels(
    stage: Stage, action: Action, cfg: Mapping[str, Any], path: str, problems: list[Problem]
) -> frozenset[str] | None:
    """The texts a guard reads; None when `channels` names one its stage does not have."""
    given: list[str] | None = cfg.get("channels")
    if stage == "tool":
        if given is not None:
            problems.append(
                Problem(
                    f"{path}.channels",
                    "a tool guard reads the arguments of each tool call; choose which tools "
                    "with 'tools', or read tool-call arguments on the output stage with "
                    "channels: [tool_call]",
                )
            )
            return None
        return frozenset()
    known = INPUT_CHANNELS if stage == "input" else OUTPUT_CHANNELS
    names = list(given or ())
    bad = [i for i, c in enumerate(names) if c not in known]
    for i in bad:
        problems.append(
            Problem(
                f"{path}.channels[{i}]",
                f"{names[i]!r} is not a channel of the {stage} stage; it has: {', '.join(known)}",
            )
        )
    if bad:
        return None
    if given:
        return frozenset(given)
    if stage == "input":
        return DEFAULT_INPUT_CHANNELS
    return DEFAULT_REDACT_OUTPUT_CHANNELS if action == "redact" else DEFAULT_OUTPUT_CHANNELS


def _guard(
    stage: Stage, cfg: Mapping[str, Any], path: str, problems: list[Problem]
) -> Guard | None:
    kind: str = cfg["kind"]
    before = len(problems)
    for key in sorted(set(cfg) - COMMON_OPTIONS - OPTIONS[kind]):
        takes = ", ".join(sorted(OPTIONS[kind])) or "no options of its own"
        problems.append(
            Problem(f"{path}.{key}", f"{_a(kind)} guard does not read {key!r}; it takes: {takes}")
        )
    for key in ("scan_limit", "over_limit"):
        if key in cfg and kind in ("size", "webhook"):
            problems.append(
                Problem(
                    f"{path}.{key}",
                    f"{_a(kind)} guard does not scan text, so {key!r} has no effect on it",
                )
            )
    if kind == "deny" and not cfg.get("words") and not cfg.get("topics"):
        problems.append(Problem(path, "a deny guard needs 'words' or 'topics' to look for"))
    if len(problems) > before:
        return None
    action: Action = cfg.get("action", "block")
    channels = _channels(stage, action, cfg, path, problems)
    if channels is None:
        return None
    webhook = None
    detector: Detector | None = None
    hold = 0
    if kind == "webhook" and stage == "tool":
        problems.append(
            Problem(
                f"{path}.kind",
                "webhook guards run on the input and output stages; a tool call's arguments "
                "are read there too (output stage)",
            )
        )
        return None
    if kind == "webhook":
        hook = cfg.get("webhook") or {}
        webhook = Webhook(
            url=hook["url"],
            timeout=float(hook.get("timeout_ms", 500)) / 1000.0,
            headers=tuple((hook.get("headers") or {}).items()),
        )
    else:
        before = len(problems)
        detector, hold = FACTORIES[kind](cfg, path, problems)
        if detector is None or len(problems) > before:
            return None
    return Guard(
        id=cfg["id"],
        stage=stage,
        kind=kind,
        action=action,
        operator=cfg.get("redact", "placeholder"),
        fail_closed=cfg.get("fail", "closed") == "closed",
        scope=_scope(cfg.get("scope")),
        channels=channels,
        tools=tuple(glob(v) for v in cfg.get("tools") or ()),
        detector=detector,
        webhook=webhook,
        hold=hold,
        scan_limit=int(cfg.get("scan_limit", DEFAULT_SCAN_LIMIT)),
        over_limit=cfg.get("over_limit", "block"),
    )
