"""An RE2 set compiled as a few smaller sets.

RE2 compiles a set into one program, and building it holds every pattern's
parsed and simplified form at once: for the prompt-injection signals (about
140 patterns, 150 KB of source) that was a 14 MB transient, the largest
allocation of the sidecar's whole life and what set its peak memory. Two
halves need about 5 MB each while they compile and hold a little less once
compiled. Every part is one more pass over the text (about 3 µs per KB), so
the parts stay few: four would cut the transient by 2 MB more and cost 6 µs
more per KB scanned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import re2

PARTS = 2


class SplitSet:
    """Which of `patterns` occur in a text, like `re2.Set.SearchSet`."""

    __slots__ = ("_parts",)

    def __init__(
        self,
        patterns: Sequence[str],
        options: Callable[[], re2.Options],
        parts: int = PARTS,
    ) -> None:
        self._parts: list[tuple[int, re2.Set]] = []
        part_size = max(1, -(-len(patterns) // parts))
        for offset in range(0, len(patterns), part_size):
            part = re2.Set.SearchSet(options())
            for pattern in patterns[offset : offset + part_size]:
                part.Add(pattern)
            part.Compile()
            self._parts.append((offset, part))

    def match(self, data: bytes) -> list[int]:
        """Indices into `patterns` of those that match, ascending."""
        found: list[int] = []
        for offset, part in self._parts:
            indices = part.Match(data)
            if indices:
                found.extend(offset + i for i in indices)
        found.sort()
        return found
