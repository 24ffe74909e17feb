"""How the text guards' normalization compiles RE2: one memory bound for every pattern.

Folding and payload decoding both scan every request with RE2, and both must
compile under the same bound; one place for it keeps them from drifting apart.
"""

from __future__ import annotations

import re2


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.max_mem = 32 << 20
    return options


def _re2_set(patterns: list[str]) -> re2.Set:
    matcher = re2.Set.SearchSet(_re2_options())
    for pattern in patterns:
        matcher.Add(pattern)
    matcher.Compile()
    return matcher
