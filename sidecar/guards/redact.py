"""How a finding is taken out of a text.

Four operators, chosen per guard in the bundle:

* `placeholder` — `[EMAIL]`: the model still sees that something was there;
* `mask` — the same length of `*`, keeping the last four characters of card
  numbers and IBANs so a human can still tell two apart;
* `hash` — `[EMAIL:3f2a9c1d]`, a salted SHA-256 prefix: equal values give equal
  tags within one bundle revision, so the model can tell "same address" apart
  from "another address" without seeing either;
* `tokenize` — `[EMAIL_1]`, numbered per call, with the original kept in a
  `Vault` that lives as long as the call; the reply's tokens are turned back
  into the originals for the caller that sent them, and the vault is dropped
  with the call, so nothing is stored.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from sidecar.guards.finding import Finding

Operator = Literal["placeholder", "mask", "hash", "tokenize"]
OPERATORS: tuple[Operator, ...] = ("placeholder", "mask", "hash", "tokenize")
_KEEP_TAIL = frozenset({"CREDIT_CARD", "IBAN"})
TOKEN = re.compile(r"\[([A-Z][A-Z0-9_]*)_(\d+)\]")
# A trailing piece of text that could still grow into a token.
_PARTIAL_TOKEN = re.compile(r"\[[A-Z0-9_]*$")


@dataclass
class Vault:
    """Placeholders handed to the model in one call, and what they stand for."""

    by_value: dict[tuple[str, str], str] = field(default_factory=dict)
    by_token: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def token_for(self, type_: str, value: str) -> str:
        key = (type_, value)
        token = self.by_value.get(key)
        if token is None:
            n = self.counts.get(type_, 0) + 1
            self.counts[type_] = n
            token = f"[{type_}_{n}]"
            self.by_value[key] = token
            self.by_token[token] = value
        return token

    def restore(self, text: str) -> str:
        if not self.by_token or "[" not in text:
            return text
        return TOKEN.sub(lambda m: self.by_token.get(m.group(0), m.group(0)), text)


def replacement(
    operator: Operator, finding: Finding, value: str, *, salt: bytes, vault: Vault | None
) -> str:
    if operator == "placeholder":
        return f"[{finding.type}]"
    if operator == "mask":
        if finding.type in _KEEP_TAIL and len(value) > 8:
            return "*" * (len(value) - 4) + value[-4:]
        return "*" * len(value)
    if operator == "hash":
        digest = hashlib.sha256(salt + value.encode("utf-8")).hexdigest()[:8]
        return f"[{finding.type}:{digest}]"
    if vault is None:  # tokenize without a vault (no way back): a plain placeholder
        return f"[{finding.type}]"
    return vault.token_for(finding.type, value)


def apply(
    text: str,
    edits: Iterable[tuple[Finding, Operator]],
    *,
    salt: bytes = b"",
    vault: Vault | None = None,
) -> str:
    """Replace each finding's span; overlapping findings merge into the first one's span."""
    ordered = sorted(edits, key=lambda e: (e[0].start, -e[0].end))
    if not ordered:
        return text
    out: list[str] = []
    pos = 0
    for finding, operator in ordered:
        if finding.end <= pos:
            continue  # inside a span already replaced
        start = max(finding.start, pos)
        out.append(text[pos:start])
        out.append(
            replacement(operator, finding, text[start : finding.end], salt=salt, vault=vault)
        )
        pos = finding.end
    out.append(text[pos:])
    return "".join(out)


class StreamRestorer:
    """Turns tokens back into originals in streamed text, holding back a partial token."""

    __slots__ = ("_pending", "_vault")

    def __init__(self, vault: Vault) -> None:
        self._vault = vault
        self._pending = ""

    def feed(self, piece: str) -> str:
        text = self._pending + piece
        tail = _PARTIAL_TOKEN.search(text, max(0, len(text) - 64))
        cut = tail.start() if tail else len(text)
        self._pending = text[cut:]
        return self._vault.restore(text[:cut])

    def flush(self) -> str:
        text, self._pending = self._pending, ""
        return self._vault.restore(text)
