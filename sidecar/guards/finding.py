"""What a detector reports: where in the text, what kind of thing, how sure.

A finding never carries the matched text, so it can go into logs, spans and
error messages as it is; whoever needs the text slices it from the input.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # the detector family: "pii", "secrets", "prompt_injection", "egress", ...
    type: str  # what was found, upper snake case: "EMAIL", "AWS_ACCESS_KEY", "ROLE_OVERRIDE"
    start: int  # character offsets into the scanned text, end exclusive
    end: int
    confidence: float = 1.0  # 0..1; heuristics report less than 1
    source: str = ""  # the id of the guard that reported it, set by the stage
