"""Injection payloads hidden in tool-call arguments: shell, path, SQL, template.

A tool that pastes an argument into a shell line, a file path, a query or a
template runs whatever syntax the argument carries. These rules look for the
syntax that changes what the receiving interpreter does (a command after a
separator, `../` out of a directory, a tautology or stacked query, template
code that reaches the runtime) rather than for scary words, so that file
names, prose, JSON and arithmetic pass clean. Each rule is a bounded regular
expression compiled once; one combined pattern per type scans a text once.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from sidecar.guards.finding import Finding

SHELL_INJECTION = "SHELL_INJECTION"
PATH_TRAVERSAL = "PATH_TRAVERSAL"
SQL_INJECTION = "SQL_INJECTION"
TEMPLATE_INJECTION = "TEMPLATE_INJECTION"


@dataclass(frozen=True, slots=True)
class _Rule:
    type: str
    pattern: str
    confidence: float


# Commands an injected shell line runs. Each must be followed by something that
# reads as its argument (an option, a path, a URL, a number, a quote) or by the
# end of the command, so "home; cat was asleep" stays prose.
_CMDS = (
    r"rm|curl|wget|nc|ncat|netcat|socat|bash|sh|zsh|ksh|dash|python[23]?|perl|ruby|php|node"
    r"|chmod|chown|whoami|uname|nslookup|telnet|base64|mkfifo|powershell|pwsh|certutil"
    r"|busybox|tftp|scp|ssh|sudo|su|eval|exec|crontab|useradd|ifconfig|netstat|shutdown"
    r"|reboot|killall|nohup|cat|id|echo|printf|ls|ping|dig|kill|find|sleep|touch|mv|cp|tee"
    r"|head|tail|env|export|wc|awk|sed|grep|xargs|dd|ps"
)
_SINKS = (
    r"sh|bash|zsh|ksh|dash|python[23]?|perl|ruby|php|node|nc|ncat|netcat|socat|telnet|base64"
    r"|xargs|tee|sudo|su|curl|wget|dd|powershell|pwsh"
)  # what a pipe feeds to run or ship out; "| head -5" is just a pipeline
_CMD = rf"(?:sudo\s+)?(?:{_CMDS})(?![\w.\-=/])"
_SINK = rf"(?:sudo\s+)?(?:{_SINKS})(?![\w.\-=/])"
_ARG = (
    r"(?:[ \t]+(?=-{1,2}\w|[/~$'\"<>*]|\.{1,2}/|\d|[\w.\-]{0,64}[./:@=][\w/])[^\s;&|`]{1,200}"
    r"|[ \t]*(?=$|[;&)`\n]))"
)
_SEPARATOR = r"(?:;|&&|\|\||(?<![&\w])&(?=\s)|%0[aAdD]|%3[bB]|%26%26)"
_PIPE = r"(?:(?<![|&])\|(?!\|)|%7[cC])"

_DOT = r"(?:\.|%2e|%252e|%c0%ae|%e0%80%ae|%u002e)"
_SLASH = r"(?:/|\\|%2f|%5c|%252f|%255c|%c0%af|%c1%9c|%e0%80%af|%u2215|%u2216)"
_SENSITIVE_HOME = (
    r"ssh|aws|gnupg|kube|docker|netrc|bash_history|zsh_history|git-credentials|npmrc|pypirc"
    r"|pgpass|config/gcloud|azure"
)

_SQL_GAP = r"(?:\s|/\*[^*]{0,40}\*/)"  # a space or an inline comment, as filters are dodged

_RULES = (
    # -- shell ----------------------------------------------------------------
    _Rule(SHELL_INJECTION, rf"{_SEPARATOR}[ \t]*{_CMD}{_ARG}", 0.9),
    _Rule(SHELL_INJECTION, rf"{_PIPE}[ \t]*{_SINK}{_ARG}", 0.9),
    _Rule(SHELL_INJECTION, rf"\$\(\s*(?:{_CMD}|<)[^()\n]{{0,200}}\)?", 1.0),
    # Backticks glued to a word run a command; backticks after a space are Markdown code.
    _Rule(SHELL_INJECTION, rf"(?<=[\w=/.:'\"$\-])`\s*{_CMD}[^`\n]{{0,200}}`", 0.9),
    _Rule(SHELL_INJECTION, r"/dev/(?:tcp|udp)/", 1.0),
    _Rule(SHELL_INJECTION, r"\$\{IFS\}|\$IFS(?!\w)", 0.9),
    # -- paths ----------------------------------------------------------------
    _Rule(PATH_TRAVERSAL, r"(?<![\w%])(?:\.\.[/\\]){2,}", 0.9),
    _Rule(PATH_TRAVERSAL, r"(?<![\w%])\.\.[/\\]|(?<=[/\\])\.\.(?=$|[\s\"'])", 0.6),
    _Rule(PATH_TRAVERSAL, rf"(?i:(?<![\w%]){_DOT}{{2}}{_SLASH})", 1.0),
    _Rule(
        PATH_TRAVERSAL,
        r"(?<![\w.])/etc/(?:passwd|shadow|group|gshadow|sudoers|master\.passwd|ssh/|ssl/private"
        r"|kubernetes/)|(?<![\w.])/proc/(?:self|\d+)/(?:environ|cmdline|maps|mem|fd|root|cwd)"
        r"|(?<![\w.])/var/run/(?:secrets/|docker\.sock)|(?<![\w.])/root/\.",
        0.8,
    ),
    _Rule(
        PATH_TRAVERSAL,
        rf"(?:~|\$HOME|\$\{{HOME\}})/\.(?:{_SENSITIVE_HOME})\b"
        r"|(?<![\w])\.ssh/(?:id_\w+|authorized_keys)|(?<![\w])\.aws/credentials"
        r"|(?<![\w])\.kube/config|(?<![\w])\.docker/config\.json",
        0.8,
    ),
    _Rule(
        PATH_TRAVERSAL,
        r"(?i:(?<![^\s:\"'=])[\\/]windows[\\/](?:win\.ini|system32[\\/]config)"
        r"|(?<=[a-z]:)[\\/]boot\.ini)",
        0.8,
    ),
    # -- SQL ------------------------------------------------------------------
    _Rule(
        SQL_INJECTION,
        r"(?i:['\")]\s*(?:or|and|\|\||&&)\s*\(?\s*(?P<q1>['\"]?)(?P<v1>\w{1,20})(?P=q1)"
        r"\s*(?:=|<=>|like\s)\s*\(?\s*(?P=q1)(?P=v1)(?!\w))",
        1.0,
    ),
    _Rule(SQL_INJECTION, r"(?i:['\"]\s*or\s*(?P<q2>['\"])(?P=q2)\s*=\s*(?P=q2))", 1.0),
    _Rule(SQL_INJECTION, r"(?i:['\")]\s*or\s+(?:true|not\s+false)\b)", 0.9),
    _Rule(
        SQL_INJECTION,
        r"(?i:(?:(?<=\bor\s)|(?<=\band\s))(?P<n3>\d{1,10})\s*=\s*(?P=n3)(?![\w.]))",
        0.7,
    ),
    _Rule(
        SQL_INJECTION,
        rf"(?i:\bunion{_SQL_GAP}+(?:(?:all|distinct){_SQL_GAP}+)?select(?:{_SQL_GAP}|\()+"
        r"(?:null\b|\d|\*|['\"@(]|[\w.$`]{1,64}\s*(?:,|from\b|\()))",
        1.0,
    ),
    _Rule(
        SQL_INJECTION,
        r"(?i:;\s*(?:drop\s+(?:table|database|schema|view|user)|truncate\s+table"
        r"|alter\s+(?:table|user)|exec(?:ute)?\s+(?:xp_|sp_)|shutdown\b))"
        r"|(?i:;\s*(?:delete\s+from\s+[\w.`\"\[\]]{1,64}\s*(?:where\b|;|--|$)"
        r"|insert\s+into\s+[\w.`\"\[\]]{1,64}\s*(?:\(|values\b|select\b)"
        r"|update\s+[\w.`\"\[\]]{1,64}\s+set\s+[\w.`\"\[\]]{1,64}\s*=))",
        1.0,
    ),
    _Rule(SQL_INJECTION, r"['\"]\)*(?:--(?=[\s\-+]|$)|#(?=\s|$)|/\*)", 0.8),
    _Rule(
        SQL_INJECTION,
        r"(?i:(?:['\")]\s*(?:and|or)\s+|;\s*)(?:sleep|pg_sleep|benchmark)\s*\(\s*\d"
        r"|\bwaitfor\s+delay\s+')",
        0.9,
    ),
    # -- templates --------------------------------------------------------------
    _Rule(TEMPLATE_INJECTION, r"[{$#]\{\s*\d{1,10}\s*[*+\-/%]\s*\d{1,10}\s*\}\}?", 0.9),
    _Rule(TEMPLATE_INJECTION, r"\{[{%][^{}]{0,200}?__\w{1,30}__", 1.0),
    _Rule(
        TEMPLATE_INJECTION,
        r"\{[{%][^{}]{0,200}?(?:(?<![\w.])(?:config|self|lipsum|cycler|joiner"
        r"|get_flashed_messages)\b|\bpopen\s*\(|\bsubprocess\b|\bos\.(?:system|popen)"
        r"|\|\s*attr\s*\(|\bimport\s+os\b)",
        0.9,
    ),
    _Rule(
        TEMPLATE_INJECTION,
        r"\$\{\s*(?:jndi\s*:|\$\{|::-)|\$\{[^{}]{0,40}\$\{[^{}]{0,20}:-",
        1.0,
    ),
    _Rule(
        TEMPLATE_INJECTION,
        r"[$#]\{[^{}]{0,200}?(?:\bT\s*\(\s*java\.|getRuntime\s*\(|\bProcessBuilder\b"
        r"|\.getClass\s*\(|\bforName\s*\(|\.exec\s*\(|__import__|child_process"
        r"|\brequire\s*\(|process\.(?:mainModule|binding)|\bnew\s+java\.)",
        1.0,
    ),
    _Rule(
        TEMPLATE_INJECTION,
        r"<%=?\s*(?:\d{1,10}\s*[*+]\s*\d{1,10}|system\s*[(\s'\"]|exec\s*\(|`|eval\s*\(|%x"
        r"|IO\.popen|File\.(?:read|open))",
        0.9,
    ),
    _Rule(TEMPLATE_INJECTION, r"freemarker\.template\.utility\.Execute|\?new\s*\(\s*\)", 1.0),
)


# The characters each type's rules can start at. A lookahead on them lets the
# combined pattern skip all other positions with one test instead of one per rule.
_FIRST = {
    SHELL_INJECTION: r"[;&|%$`/]",
    PATH_TRAVERSAL: r"[./\\~$%]",
    SQL_INJECTION: r"['\")`;#/0-9uUwW]",
    TEMPLATE_INJECTION: r"[{$#<f?]",
}


class ArgumentInjectionDetector:
    """Finds shell, path-traversal, SQL and template injection in argument strings."""

    TYPES = (SHELL_INJECTION, PATH_TRAVERSAL, SQL_INJECTION, TEMPLATE_INJECTION)

    __slots__ = ("_scanners",)

    def __init__(self, *, types: Collection[str] | None = None) -> None:
        wanted = set(self.TYPES if types is None else types)
        unknown = wanted - set(self.TYPES)
        if unknown:
            known = ", ".join(self.TYPES)
            raise ValueError(f"unknown argument-injection types {sorted(unknown)}; known: {known}")
        self._scanners: list[tuple[str, re.Pattern[str], dict[str, float]]] = []
        for type_ in self.TYPES:
            if type_ not in wanted:
                continue
            rules = [r for r in _RULES if r.type == type_]
            groups = {f"r{i}": r.confidence for i, r in enumerate(rules)}
            alternatives = "|".join(f"(?P<r{i}>{r.pattern})" for i, r in enumerate(rules))
            combined = f"(?=(?:{_FIRST[type_]}))(?:{alternatives})"
            self._scanners.append((type_, re.compile(combined), groups))

    def scan(self, text: str) -> list[Finding]:
        out: list[Finding] = []
        for type_, pattern, confidence in self._scanners:
            spans: list[tuple[int, int, float]] = []
            for m in pattern.finditer(text):
                if m.end() == m.start():
                    continue
                score = confidence[m.lastgroup or ""]
                if spans and m.start() <= spans[-1][1]:
                    start, end, best = spans[-1]
                    spans[-1] = (start, max(end, m.end()), max(best, score))
                else:
                    spans.append((m.start(), m.end(), score))
            out += [Finding("arg_injection", type_, s, e, c) for s, e, c in spans]
        out.sort(key=lambda f: (f.start, f.end))
        return out
