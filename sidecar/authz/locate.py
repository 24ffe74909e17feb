"""Line numbers for Cedar errors, which cedarpy reports without source locations.

A policy file is split into its policies by a small scanner (strings and
comments respected); an error names its policy, and the offending name in
the message (an attribute, a token, an action) is looked up inside that
policy's text to point at the exact line.
"""

from __future__ import annotations

import re

_QUOTED = re.compile(r"`([^`]+)`")


def policy_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of each top-level `...;` policy, comments and blanks excluded."""
    spans: list[tuple[int, int]] = []
    start: int | None = None
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if start is None and not ch.isspace():
            start = i
        if ch == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif ch == ";" and start is not None:
            spans.append((start, i + 1))
            start = None
        i += 1
    if start is not None:
        spans.append((start, n))
    return spans


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def error_line(text: str, policy_index: int, message: str) -> int | None:
    """The line of the error: where a name quoted in the message appears, else the policy start."""
    spans = policy_spans(text)
    if not 0 <= policy_index < len(spans):
        return None
    start, end = spans[policy_index]
    chunk = text[start:end]
    for name in _QUOTED.findall(message):
        leaf = name.rsplit("::", 1)[-1].strip('"')
        found = re.search(rf"(?<![\w.]){re.escape(leaf)}(?!\w)", chunk) or re.search(
            re.escape(leaf), chunk
        )
        if found:
            return line_of(text, start + found.start())
    return line_of(text, start)
