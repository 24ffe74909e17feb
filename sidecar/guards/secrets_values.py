"""Whether a value found after a keyword is a secret or only names or points at one.

Without a provider's format, a credential is only told from a variable name,
a path, a reference or a placeholder by how the value itself reads. These
judgements are heuristics that grow with every false positive, so they live
apart from the detector that finds the candidates.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from itertools import pairwise

_PLACEHOLDER_WORDS = (
    "example", "dummy", "placeholder", "changeme", "change_me", "change-me", "redacted",
    "your", "xxxx", "****", "sample", "fake", "insert", "replace",
)  # fmt: skip

_REFERENCE = re.compile(
    r"[A-Za-z_$][A-Za-z0-9_$]*(?:\.[A-Za-z_$][A-Za-z0-9_$]*)+"  # settings.API_KEY
    r"|_*[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+"  # OPENAI_API_KEY
    r"|\$[A-Za-z_{].*|%[A-Za-z_][A-Za-z0-9_]*%"  # $VAR, ${VAR}, %VAR%
)
_WORDS = re.compile(r"[a-z]+(?:[_.-][a-z]+)+")  # my-app-db-credentials
_IDENTIFIER = re.compile(r"[A-Za-z0-9_]*[A-Za-z][A-Za-z0-9_]*")
_SNAKE_PART = re.compile(r"[A-Za-z]+[0-9]{0,3}[A-Za-z]*|[0-9]{1,3}")
# Pieces of a name: `HTTPBasicAuthHandler` is HTTP, Basic, Auth, Handler. Random text
# changes case or turns to digits every one or two characters, and its lowercase
# runs often have no vowel.
_NAME_PIECES = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_NAME_PIECE_LENGTH = 3.5
_VOWELS = frozenset("aeiouy")
_PATH = re.compile(r"(?:~|\.{1,2})?/[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]*)+")


def shannon_entropy(value: str) -> float:
    """Bits per character of `value`, from its own character frequencies."""
    n = len(value)
    if not n:
        return 0.0
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def _mostly_sequential(value: str) -> bool:
    """`1234567890abcdef`, `aaaa`, `abcdef`: most neighbours one code point apart or equal."""
    steps = sum(1 for a, b in pairwise(value) if abs(ord(a) - ord(b)) <= 1)
    return steps * 2 >= len(value) - 1


def _is_placeholder(value: str, min_entropy: float) -> bool:
    low = value.lower()
    return (
        any(word in low for word in _PLACEHOLDER_WORDS)
        or _mostly_sequential(value)
        or shannon_entropy(value) < min_entropy
    )


def _is_name(value: str) -> bool:
    """`max_tokens_per_1_minute`, `AsyncAzureADTokenProvider`: a name in code, not a secret."""
    if not _IDENTIFIER.fullmatch(value):
        return False
    core = value.strip("_")
    if "_" in core:
        return all(_SNAKE_PART.fullmatch(part) for part in core.split("_") if part)
    if core.islower() or core.isupper():
        return False
    pieces = _NAME_PIECES.findall(core)
    if sum(map(len, pieces)) < _NAME_PIECE_LENGTH * len(pieces):
        return False
    return all(
        len(p) < 3 or not p[-1].islower() or not _VOWELS.isdisjoint(p.lower()) for p in pieces
    )


# A canonical UUID, or hex of an MD5, SHA-1 or SHA-256 digest's length.
_IDENTIFIER_SHAPE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{64}"
)
