"""Guards: detectors that read the texts of a call and report findings.

Detectors are pure functions over a string (no I/O, no policy); the stage
module decides from the bundle which detectors run where, and whether a
finding blocks, redacts or is only reported.
"""
