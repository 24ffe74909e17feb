"""What the limit stage reads from, and removes from, a stream on its way out.

Both work on bytes with one regular-expression pass: the relay calls them
only for calls under a token or cost limit.
"""

from __future__ import annotations

import re

from sidecar.adapters.sse import split_events

# The string values of the fields that carry generated text in OpenAI and Anthropic
# stream events (chat deltas, completions text, Responses deltas, Anthropic text and
# tool-input deltas). Escapes count as one character or more; close enough to estimate.
_TEXT = re.compile(
    rb'"(?:content|text|delta|arguments|partial_json|refusal)"\s*:\s*"((?:[^"\\]|\\.)*)"'
)
# An OpenAI chat or completions chunk with no choices and a usage object: the extra
# chunk `stream_options.include_usage` adds at the end of a stream.
_USAGE_ONLY = re.compile(rb'"choices"\s*:\s*\[\s*\]')
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')


def streamed_text_chars(chunk: bytes) -> int:
    return sum(len(m) for m in _TEXT.findall(chunk))


def without_usage_chunks(events: bytes) -> bytes:
    """Whole SSE events in; the same without the usage-only chunk (a caller did not ask)."""
    if b'"usage"' not in events or _USAGE_ONLY.search(events) is None:
        return events
    kept = [
        event
        for event in split_events(events)
        if not (event and _USAGE_OBJECT.search(event) and _USAGE_ONLY.search(event))
    ]
    return b"".join(kept)
