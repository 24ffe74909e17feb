"""Credentials in text: provider keys by their published shapes, other secrets by context.

An agent pastes keys into prompts, tool arguments and curl commands; a model
echoes them back. Provider keys have documented shapes (a fixed prefix, an
alphabet, a length, sometimes a marker), so they are recognised exactly and
need no surrounding words. Any other credential is only recognisable by what
names it (`password = ...`, `"client_secret": ...`, `Authorization: Bearer ...`)
plus a value that looks random; that rule is a heuristic and reports a lower
confidence.

Speed matters because every message passes here, and most text is prose. All
provider shapes are one regex whose every branch begins at a rare character
(`-`, `_`, `A`, `J`, `.`: the separator inside `sk-`, `ghp_`, `xoxb-`, ... and
the capital in `AKIA`, `AIza`, `eyJ`) and looks behind for the rest of the
prefix, so the regex engine skips ordinary letters without starting a match.
Keyword assignments are found the same way, from the assignment operator
backwards to the name, wherever the assignment sits in a line: when the
first operator of a line names something harmless (`config: password=...`,
`env: SECRET_KEY=...`), the operators inside its value whose names are
keywords are tried in turn; `--password VALUE` flags are found by their
leading `--`. A candidate either fails within a few characters or
matches its whole run (possessively where the run could be retried), and the
format checks that need more than a regex run once per candidate in Python, so
the time stays linear in the text.

Decisions a reader may look for:

* Stripe test-mode secret keys (`sk_test_`, `rk_test_`) are reported, with a
  lower confidence: they authenticate to a real account's test data and
  settings. Publishable keys (`pk_`) are public by design and are not.
* Slack incoming-webhook URLs are reported as `SLACK_TOKEN`: the URL is the
  credential.
* A value that carries a provider's prefix but not its format (too short, a
  wrong alphabet) is a truncated or made-up example, not a generic secret.
* Public keys and certificates are not secrets; only `PRIVATE KEY` blocks are,
  and only with at least one line of key material (not `<your key here>`).
* After a keyword, a random-looking value is reported — except a UUID or a
  hex string of a digest's length (32, 40 or 64 characters): those shapes are
  overwhelmingly record ids, commit SHAs and content hashes that configs and
  logs assign to `id`/`key`/`token`-like names, and flagging them would bury
  real findings. Base64 blobs stay reported (AWS secret keys have that shape).
  Without a keyword none of these is. A value that names or points at a secret instead
  (`settings.API_KEY`, `$TOKEN`, a path, a URL, an identifier in code) is not.
* A candidate that fails its format check consumes its run of characters: a
  key glued inside a longer token is part of that token, not a key.

A finding never carries the matched text; `Finding` is safe to log.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from sidecar.guards.finding import Finding
from sidecar.guards.secrets_providers import (
    _GROUPS,
    _OPENAI_MARKER,
    _OPENAI_SHAPE,
    _PROSE_BODY,
    _PROVIDER_MIN_ENTROPY,
    _PROVIDER_PREFIXES,
    _PROVIDERS,
    _STRIPE_TEST_CONFIDENCE,
    _jwt_end,
    _pem_end,
)
from sidecar.guards.secrets_values import (
    _IDENTIFIER_SHAPE,
    _PATH,
    _REFERENCE,
    _WORDS,
    _is_name,
    _is_placeholder,
    shannon_entropy,
)

__all__ = [
    "DEFAULT_KEYWORDS",
    "EXTRA_HOLD_CHARS",
    "KIND",
    "TYPES",
    "SecretsDetector",
    "shannon_entropy",
]

KIND: Final = "secrets"
TYPES: Final = (
    "OPENAI_KEY",
    "ANTHROPIC_KEY",
    "AWS_ACCESS_KEY",
    "AWS_SECRET_KEY",
    "GITHUB_TOKEN",
    "SLACK_TOKEN",
    "STRIPE_KEY",
    "GOOGLE_API_KEY",
    "HUGGINGFACE_TOKEN",
    "NPM_TOKEN",
    "PRIVATE_KEY",
    "JWT",
    "GENERIC_SECRET",
)

# A keyword-assigned value may contain these besides letters, digits and `_.%+-@:/=~`
# (passwords use them); a stream must hold them back as part of a possible value.
EXTRA_HOLD_CHARS: Final = "!#$*^"

# Matched inside the name before an assignment, ignoring case and `_`, `-`, `.`;
# "bearer" and "basic" are HTTP auth schemes, followed by a space instead.
DEFAULT_KEYWORDS: Final = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "api_key",
    "access_key",
    "auth_key",
    "private_key",
    "signing_key",
    "encryption_key",
    "master_key",
    "credential",
    "authorization",
    "bearer",
    "basic",
)

_AUTH_SCHEMES = ("bearer", "basic")
_WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_B64URL = _WORD | {"_", "-"}

_GENERIC_CONFIDENCE = 0.7
_AWS_SECRET_CONFIDENCE = 0.9

# Every branch starts with a literal (`=`, `:`, `B`, `b`), as the provider regex does.
_OPERATORS = r"=[=>]?|:=?|Bearer[ \t]|bearer[ \t]|BEARER[ \t]|Basic[ \t]|basic[ \t]|BASIC[ \t]"
_VALUE_CHARS = "A-Za-z0-9_.%+@:/=~" + re.escape(EXTRA_HOLD_CHARS) + "-"
# The name before an assignment, read backwards: spaces, `]`, a quote, then the name.
_NAME_BEFORE = re.compile(r"[ \t]{0,8}\]?[\"'`]?\]?([A-Za-z0-9_.\-]{1,40})")
_NAME_WINDOW = 52

# Names that hold something about a secret, not the secret.
_NOT_SECRET_SUFFIXES = (
    "url", "uri", "endpoint", "file", "path", "dir", "name", "type", "id", "count",
    "length", "len", "limit", "size", "ttl", "expiry", "expires", "expiresat", "timeout",
    "policy", "header", "prefix", "field", "ref", "izer", "ized", "env", "var",
)  # fmt: skip
_NOT_SECRET_NAMES = ("pagetoken", "nexttoken", "continuationtoken", "synctoken", "tokenize")
_AWS_SECRET = re.compile(r"[A-Za-z0-9/+]{40}")

_SEPARATORS = str.maketrans("", "", "_-.")


def _normalize(name: str) -> str:
    return name.lower().translate(_SEPARATORS)


class SecretsDetector:
    """Finds credentials; `scan` returns non-overlapping findings sorted by start.

    `entropy_threshold` (bits per character) and `min_value_length` apply to values
    found by a keyword (`GENERIC_SECRET`, `AWS_SECRET_KEY`); provider formats carry
    their own lengths. `keywords` replaces `DEFAULT_KEYWORDS`; an empty list turns
    the keyword rule off and leaves the provider formats.
    """

    __slots__ = (
        "_assign",
        "_entropy_threshold",
        "_keywords",
        "_min_value_length",
        "_schemes",
    )

    def __init__(
        self,
        *,
        entropy_threshold: float = 3.5,
        min_value_length: int = 16,
        keywords: Sequence[str] | None = None,
    ) -> None:
        if min_value_length < 1:
            raise ValueError("min_value_length must be at least 1")
        words = [_normalize(k) for k in (DEFAULT_KEYWORDS if keywords is None else keywords)]
        names = [re.escape(w) for w in words if w and w not in _AUTH_SCHEMES]
        self._keywords = re.compile("|".join(names)) if names else None
        self._schemes = frozenset(w for w in words if w in _AUTH_SCHEMES)
        self._entropy_threshold = entropy_threshold
        self._min_value_length = min_value_length
        self._assign = re.compile(
            rf"(?:{_OPERATORS})[ \t]{{0,8}}(?P<quote>[rRbBuUfF]{{0,2}}[\"'`])?"
            rf"(?P<value>[{_VALUE_CHARS}]{{{min_value_length},}})"
        )

    def scan(self, text: str) -> list[Finding]:
        found = self._providers(text)
        if self._keywords is not None or self._schemes:
            generic = self._assignments(text)
            if generic:
                found = _merge(found, generic)
        return found

    # -- provider formats ---------------------------------------------------------------

    def _providers(self, text: str) -> list[Finding]:
        out: list[Finding] = []
        pos = 0
        # Where the next END line and the next BEGIN line are: each found once, not once
        # per header, so many headers cost no more than one.
        next_end = next_begin = 0
        search = _PROVIDERS.search
        while (m := search(text, pos)) is not None:
            pos = m.end()
            group = m.lastgroup
            if group is None:  # pragma: no cover - every branch has a named group
                continue
            kind, back, confidence = _GROUPS[group]
            start = m.start(group) - back
            end = m.end()
            if group == "pem":
                if next_end != -1 and next_end < end:
                    next_end = text.find("-----END ", end)
                if next_begin != -1 and next_begin < end:
                    next_begin = text.find("-----BEGIN ", end)
                own_end = next_end if next_begin == -1 or next_end < next_begin else -1
                pem_end = _pem_end(text, end, own_end)
                if pem_end is not None:
                    out.append(Finding(KIND, kind, start, pem_end, confidence))
                    pos = pem_end
                continue
            if group == "slack_hook":
                for scheme in ("https://", "http://"):
                    if text.startswith(scheme, start - len(scheme), start):
                        start -= len(scheme)
                        break
            elif start > 0 and text[start - 1] in (_B64URL if kind == "JWT" else _WORD):
                continue
            body = m.group(group)
            if group == "openai":
                if not (_OPENAI_MARKER in body or _OPENAI_SHAPE.fullmatch(body)):
                    continue
            elif kind == "JWT":
                jwt_end = _jwt_end(text, start, end)
                if jwt_end is not None:
                    out.append(Finding(KIND, kind, start, jwt_end, confidence))
                continue
            elif kind == "STRIPE_KEY" and body.startswith("test_"):
                confidence = _STRIPE_TEST_CONFIDENCE
            if _PROSE_BODY.fullmatch(body) or _is_placeholder(body, _PROVIDER_MIN_ENTROPY):
                continue
            out.append(Finding(KIND, kind, start, end, confidence))
        return out

    # -- keyword assignments --------------------------------------------------------------

    def _assignments(self, text: str) -> list[Finding]:
        out: list[Finding] = []
        search = self._assign.search
        pos = 0
        while (m := search(text, pos)) is not None:
            named, finding = self._assignment(text, m)
            if finding is not None:
                out.append(finding)
            pos = m.end()
            if not named:
                # The value may hold the assignment that matters: in `config: password=...`
                # or `env: SECRET_KEY=...` the first operator names something harmless and
                # its "value" runs over the real one. Only operators whose name is a
                # keyword are retried, so no stretch is read more than twice.
                pos = self._inner_assignment(text, m.start() + 1, m.end())
        if "--" in text:
            out = _merge_sorted(out, self._flags(text))
        return out

    def _inner_assignment(self, text: str, lo: int, hi: int) -> int:
        """The first operator in text[lo:hi] whose name is a keyword, else `hi`."""
        while (m := _OPERATOR_CHAR.search(text, lo, hi)) is not None:
            if self._keyword_name(text, m.start()):
                return m.start()
            lo = m.end()
        return hi

    def _flags(self, text: str) -> list[Finding]:
        """`--password VALUE`: a command-line flag that names a secret, then its value."""
        out: list[Finding] = []
        for m in _FLAG.finditer(text):
            name = _normalize(m.group("flag"))
            if not self._names_secret(name):
                continue
            start = m.start("value")
            value = m.group("value").rstrip(".:")
            if len(value) < self._min_value_length or value.startswith(_PROVIDER_PREFIXES):
                continue
            finding = self._judge_value(value, name, start, quoted=m.start("quote") != -1)
            if finding is not None:
                out.append(finding)
        return out

    def _assignment(self, text: str, m: re.Match[str]) -> tuple[bool, Finding | None]:
        """Whether the operator's name is a keyword (or an auth scheme), and the finding."""
        start = m.start("value")
        value = m.group("value").rstrip(".:")  # a full stop or colon after the value
        op = m.start()
        if text[op] in "Bb":  # an HTTP auth scheme, `Authorization: Bearer <value>`
            scheme = text[op : op + 6].rstrip().lower()
            if (op > 0 and text[op - 1] in _WORD) or scheme not in self._schemes:
                return False, None
            name = ""
        else:
            found = self._keyword_name(text, op)
            if found is None:
                return False, None
            name = found
        if len(value) < self._min_value_length or value.startswith(_PROVIDER_PREFIXES):
            return True, None
        return True, self._judge_value(value, name, start, quoted=m.start("quote") != -1)

    def _judge_value(self, value: str, name: str, start: int, *, quoted: bool) -> Finding | None:
        end = start + len(value)
        passwordish = "pass" in name
        kind, confidence = "GENERIC_SECRET", _GENERIC_CONFIDENCE
        if ("aws" in name or "secretaccesskey" in name) and _AWS_SECRET.fullmatch(value):
            kind, confidence = "AWS_SECRET_KEY", _AWS_SECRET_CONFIDENCE
        elif not self._looks_secret(value, passwordish=passwordish, quoted=quoted):
            return None
        if _is_placeholder(value, self._entropy_threshold):
            return None
        return Finding(KIND, kind, start, end, confidence)

    def _keyword_name(self, text: str, op: int) -> str | None:
        """The normalized name assigned at `op` if it names a secret, else None."""
        window = text[max(0, op - _NAME_WINDOW) : op][::-1]
        m = _NAME_BEFORE.match(window)
        if m is None:
            return None
        name = _normalize(m.group(1)[::-1])
        return name if self._names_secret(name) else None

    def _names_secret(self, name: str) -> bool:
        if self._keywords is None or self._keywords.search(name) is None:
            return False
        return not (
            name.endswith(_NOT_SECRET_SUFFIXES) or any(n in name for n in _NOT_SECRET_NAMES)
        )

    @staticmethod
    def _looks_secret(value: str, *, passwordish: bool, quoted: bool) -> bool:
        """False for a value that names or points at a secret instead of being one.

        A quoted password made of words is still a password; an unquoted name after
        `password =` is a variable in code.
        """
        if "://" in value or _REFERENCE.fullmatch(value) or _PATH.fullmatch(value):
            return False
        if _IDENTIFIER_SHAPE.fullmatch(value):
            return False
        if passwordish and quoted:
            return True
        return not (_WORDS.fullmatch(value) or _is_name(value))


_OPERATOR_CHAR = re.compile(r"(?<![=:])[=:]")
# `--password VALUE`: the value after whitespace (with `=` the operators above find it).
_FLAG = re.compile(
    r"(?<![A-Za-z0-9_-])--(?P<flag>[A-Za-z][A-Za-z0-9_-]{0,39})[ \t]{1,8}"
    rf"(?P<quote>[\"'])?(?P<value>[{_VALUE_CHARS}]{{1,}})"
)


def _merge_sorted(a: list[Finding], b: list[Finding]) -> list[Finding]:
    """Both lists as one, sorted; a finding of `b` is dropped where one of `a` overlaps it."""
    if not b:
        return a
    kept = [f for f in b if not any(g.start < f.end and f.start < g.end for g in a)]
    return sorted(a + kept, key=lambda f: f.start)


def _merge(providers: list[Finding], generic: list[Finding]) -> list[Finding]:
    """Provider findings win; a keyword finding is kept only where none overlaps it."""
    if not providers:
        return generic
    kept: list[Finding] = []
    i = 0
    for g in generic:  # both lists are sorted and each is free of overlaps
        while i < len(providers) and providers[i].end <= g.start:
            i += 1
        if i == len(providers) or providers[i].start >= g.end:
            kept.append(g)
    return sorted(providers + kept, key=lambda f: f.start)
