"""Guards whose rules come from the bundle: patterns, deny lists, size, tool schemas.

Bundle patterns are written by whoever edits the bundle, so they go through
RE2 (`google-re2`), whose matching time is linear in the text: no pattern can
freeze the proxy with catastrophic backtracking. All patterns of one guard
are joined into one alternation, so a text is scanned once, not once per
pattern; the named group that matched says which rule it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema
import re2

from sidecar.bundle.validate import Problem
from sidecar.guards.finding import Finding
from sidecar.names import fold


class PatternSyntaxError(Exception):
    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


@dataclass(frozen=True, slots=True)
class PatternRule:
    type: str
    regex: str
    max_length: int = 64  # the longest text it can match: how much a stream keeps back
    ignore_case: bool = False
    where: str = ""  # the bundle path, for errors


def _options() -> Any:
    options = re2.Options()
    options.max_mem = 64 << 20
    options.log_errors = False  # errors are reported as bundle problems, not on stderr
    return options


def _reason(exc: Exception) -> str:
    arg = exc.args[0] if exc.args else exc
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


class PatternDetector:
    """The bundle's own patterns, one RE2 scan per text."""

    __slots__ = ("_combined", "_kind", "_types", "hold")

    def __init__(self, rules: Sequence[PatternRule], *, kind: str) -> None:
        self._kind = kind
        self._types: dict[str, str] = {}
        parts: list[str] = []
        for i, rule in enumerate(rules):
            flags = "(?i)" if rule.ignore_case else ""
            source = f"{flags}{rule.regex}"
            try:
                re2.compile(source, _options())
            except re2.error as exc:
                raise PatternSyntaxError(
                    rule.where or f"patterns[{i}]", f"not a valid RE2 pattern: {_reason(exc)}"
                ) from None
            if "<_sidecar_" in rule.regex:
                raise PatternSyntaxError(
                    rule.where or f"patterns[{i}]", "group names starting _sidecar_ are reserved"
                )
            group = f"_sidecar_p{i}"
            self._types[group] = rule.type
            parts.append(f"(?P<{group}>{source})")
        self._combined = re2.compile("|".join(parts), _options()) if parts else None
        self.hold = max((r.max_length for r in rules), default=1) - 1

    def scan(self, text: str) -> list[Finding]:
        if self._combined is None or not text:
            return []
        out: list[Finding] = []
        for m in self._combined.finditer(text):
            if m.end() == m.start():
                continue
            group = m.lastgroup
            if group is not None:
                out.append(Finding(self._kind, self._types[group], m.start(), m.end()))
        return out


GAP = 16  # whitespace characters allowed between the words of a deny-list phrase


def _longest(phrase: str) -> int:
    words = phrase.split()
    return sum(len(w) for w in words) + GAP * (len(words) - 1)


class DenyListDetector:
    """Words and topic phrases that must not pass, matched case-insensitively as whole words."""

    __slots__ = ("_combined", "_topics", "hold")

    def __init__(self, words: Sequence[str], topics: Mapping[str, Sequence[str]]) -> None:
        self._topics: dict[str, str] = {}
        parts: list[str] = []
        entries = [("DENIED_WORD", w) for w in words] + [
            (f"TOPIC_{name.upper()}", p) for name, phrases in topics.items() for p in phrases
        ]
        for i, (type_, phrase) in enumerate(entries):
            group = f"_sidecar_d{i}"
            self._topics[group] = type_
            # Spaces in a phrase match a run of up to GAP whitespace characters: bounded,
            # so a stream knows how much to keep back.
            body = rf"[\s\p{{Z}}]{{1,{GAP}}}".join(re2.escape(word) for word in phrase.split())
            parts.append(f"(?P<{group}>{body})")
        self._combined = (
            re2.compile(r"(?i)\b(?:" + "|".join(parts) + r")\b", _options()) if parts else None
        )
        self.hold = max((_longest(p) for _, p in entries), default=1) - 1

    def scan(self, text: str) -> list[Finding]:
        if self._combined is None or not text:
            return []
        out: list[Finding] = []
        for m in self._combined.finditer(text):
            group = m.lastgroup or ""
            out.append(Finding("deny", self._topics.get(group, "DENIED_WORD"), m.start(), m.end()))
        return out


class SizeDetector:
    """Texts longer than the limit, in characters or estimated tokens (four characters each).

    The stage applies it to the texts of a call together (`over`), so a prompt
    cannot pass by being spread over many messages; `scan` checks one text.
    """

    __slots__ = ("max_chars",)

    def __init__(self, *, max_chars: int | None = None, max_tokens: int | None = None) -> None:
        limits = [n for n in (max_chars, max_tokens * 4 if max_tokens else None) if n]
        self.max_chars = min(limits) if limits else None

    def scan(self, text: str) -> list[Finding]:
        if self.max_chars is not None and len(text) > self.max_chars:
            return [Finding("size", "SIZE_LIMIT", self.max_chars, len(text))]
        return []

    def over(self, total: int) -> bool:
        return self.max_chars is not None and total > self.max_chars


class ToolSchemaDetector:
    """Tool-call arguments checked against the bundle's JSON Schema for that tool.

    It reads the arguments as one JSON document, so the tool stage calls
    `check(name, arguments)`; `scan` exists for the common interface and finds
    nothing, since a schema needs to know which tool the text belongs to.
    """

    __slots__ = ("_validators",)

    def __init__(self, schemas: Mapping[str, Any], path: str, problems: list[Problem]) -> None:
        self._validators: dict[str, Any] = {}
        for name, schema in schemas.items():
            try:
                cls = jsonschema.validators.validator_for(schema)
                cls.check_schema(schema)
            except jsonschema.SchemaError as exc:
                problems.append(
                    Problem(f"{path}.{name}", f"not a valid JSON Schema: {exc.message}")
                )
                continue
            self._validators[fold(name)] = cls(schema)

    def scan(self, text: str) -> list[Finding]:
        return []

    def check(self, name: str, arguments: Any) -> list[Finding]:
        validator = self._validators.get(fold(name))
        if validator is None:
            return []
        out: list[Finding] = []
        if next(validator.iter_errors(arguments), None) is not None:
            out.append(Finding("tool_schema", "SCHEMA_VIOLATION", 0, 0))
        return out
