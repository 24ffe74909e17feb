"""How the sidecar compares model and tool names: without regard to case.

Upstreams disagree on the case of a name (some look models up exactly, others
fold case, as Go's JSON decoder folds field names), and the sidecar forwards
the name as the agent sent it. A `forbid` on `gpt-4o*` that let `GPT-4o`
through would be bypassed wherever the upstream folds case, so every name is
matched in one folded form: the request's model and tool names through `fold`,
every name or glob a bundle writes through `fold` or `glob` at load.
"""

from __future__ import annotations

import fnmatch
import re


def fold(name: str) -> str:
    """The form of a name that policy matches (Unicode case folding, as `str.casefold`)."""
    return name.casefold()


def glob(pattern: str) -> re.Pattern[str]:
    """A bundle's shell-style name glob, matching folded names."""
    return re.compile(fnmatch.translate(fold(pattern)), re.DOTALL)
