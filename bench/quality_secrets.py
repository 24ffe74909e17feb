"""How well the secrets detector does on the labelled development set, and how fast it is.

The numbers answer two questions a guard's owner has: does it catch each
provider's keys (recall per kind), and what does it flag that it should not
(false positives per kind of look-alike)? A second column runs the detector
with the keyword rule off, so the cost and the gain of that heuristic are
visible apart from the exact provider formats.

A labelled row counts as detected when one finding's span covers the labelled
secret. Where the label is a whole assignment (`name = "value"`), the value is
what must be covered: the detector reports the value, since the name is not
secret and redacting it would hide what the text is about.

Speed is measured on ordinary prose (the benign book passages of the
prompt-injection set) and on code (this repository's own Python sources), cut
into 1 KB pieces so that per-call overhead counts as it does for real messages.

    .venv/bin/python bench/quality_secrets.py [--data DIR] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sidecar.guards.finding import Finding  # noqa: E402
from sidecar.guards.secrets import SecretsDetector  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "eval"
CHUNK = 1024
_ASSIGNMENT = re.compile(
    r"[A-Za-z_][A-Za-z0-9_.\-]*[\"']?\s*[:=]\s*[\"']?(?!//)(?P<value>[^\"'\s]+)[\"']?"
)

Scan = Callable[[str], list[Finding]]


@dataclass
class Tally:
    label: int
    rows: int = 0
    hits: int = 0  # detected (label 1) or flagged (label 0), keyword rule on
    hits_off: int = 0  # the same with the keyword rule off
    types: Counter[str] = field(default_factory=Counter)


def load(path: Path) -> list[dict[str, object]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def target(secret: str) -> str:
    """The part of a labelled secret a finding must cover: the value of an assignment."""
    m = _ASSIGNMENT.fullmatch(secret)
    return m.group("value") if m else secret


def covered(text: str, secret: str, findings: list[Finding]) -> bool:
    want = target(secret)
    start = text.find(want)
    if start < 0:
        return False
    end = start + len(want)
    return any(f.start <= start and f.end >= end for f in findings)


def evaluate(rows: list[dict[str, object]], on: Scan, off: Scan) -> dict[str, Tally]:
    tallies: dict[str, Tally] = {}
    for row in rows:
        text, kind, label = str(row["text"]), str(row["kind"]), int(str(row["label"]))
        tally = tallies.setdefault(kind, Tally(label))
        tally.rows += 1
        found, found_off = on(text), off(text)
        if label:
            secret = str(row["secret"])
            tally.hits += covered(text, secret, found)
            tally.hits_off += covered(text, secret, found_off)
        else:
            tally.hits += bool(found)
            tally.hits_off += bool(found_off)
        tally.types.update(f.type for f in found)
    return tallies


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def quality_table(tallies: dict[str, Tally]) -> list[str]:
    lines = [
        "| kind | label | rows | caught / flagged | rate | keyword rule off | reported as |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for kind, t in sorted(tallies.items(), key=lambda kv: (-kv[1].label, kv[0])):
        types = ", ".join(f"{name} {n}" for name, n in t.types.most_common()) or "-"
        lines.append(
            f"| {kind} | {t.label} | {t.rows} | {t.hits} | {pct(t.hits, t.rows)} "
            f"| {t.hits_off} ({pct(t.hits_off, t.rows)}) | {types} |"
        )
    pos = [t for t in tallies.values() if t.label]
    neg = [t for t in tallies.values() if not t.label]
    p_rows, n_rows = sum(t.rows for t in pos), sum(t.rows for t in neg)
    lines += [
        "",
        "| overall | keyword rule on | keyword rule off |",
        "|---|---:|---:|",
        f"| recall ({p_rows} secrets) | {pct(sum(t.hits for t in pos), p_rows)} "
        f"| {pct(sum(t.hits_off for t in pos), p_rows)} |",
        f"| false-positive rate ({n_rows} look-alikes) | {pct(sum(t.hits for t in neg), n_rows)} "
        f"| {pct(sum(t.hits_off for t in neg), n_rows)} |",
    ]
    return lines


def chunks(texts: Iterable[str]) -> list[str]:
    joined = "\n\n".join(texts)
    return [joined[i : i + CHUNK] for i in range(0, len(joined), CHUNK)]


def us_per_kb(scan: Scan, pieces: list[str], repeat: int) -> tuple[float, float]:
    """Median and best microseconds per KB over `repeat` passes."""
    size_kb = sum(len(p) for p in pieces) / 1024
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        for piece in pieces:
            scan(piece)
        runs.append((time.perf_counter() - started) / size_kb * 1e6)
    return statistics.median(runs), min(runs)


def speed_table(scan: Scan, corpora: dict[str, list[str]], repeat: int) -> list[str]:
    lines = ["| text | KB | µs/KB median | µs/KB best |", "|---|---:|---:|---:|"]
    for name, pieces in corpora.items():
        if not pieces:
            continue
        median, best = us_per_kb(scan, pieces, repeat)
        size_kb = sum(len(p) for p in pieces) / 1024
        lines.append(f"| {name} | {size_kb:.0f} | {median:.1f} | {best:.1f} |")
    return lines


def corpora(data: Path, rows: list[dict[str, object]]) -> dict[str, list[str]]:
    prose: list[str] = []
    injection = data / "prompt_injection.jsonl"
    if injection.exists():
        prose = [
            str(r["text"])
            for r in load(injection)
            if r.get("label") == 0 and r.get("category") == "benign_document"
        ]
    code = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "sidecar").rglob("*.py"))]
    return {
        "prose (benign book passages), 1 KB pieces": chunks(prose),
        "code (this repository's sidecar/*.py), 1 KB pieces": chunks(code),
        "secrets.jsonl rows, one scan per row": [str(r["text"]) for r in rows],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the eval data folder")
    parser.add_argument("--repeat", type=int, default=15, help="timed passes per text")
    args = parser.parse_args(argv)

    rows = load(args.data / "secrets.jsonl")
    detector = SecretsDetector()
    providers_only = SecretsDetector(keywords=())
    tallies = evaluate(rows, detector.scan, providers_only.scan)

    assigned = Counter(
        str(r["kind"]) for r in rows if r["label"] == 1 and target(str(r["secret"])) != r["secret"]
    )
    out = [f"## Secrets detector on {args.data.name}/secrets.jsonl ({len(rows)} rows)", ""]
    out += quality_table(tallies)
    if assigned:
        kinds = ", ".join(f"{kind} ({n})" for kind, n in sorted(assigned.items()))
        out += ["", f"Labels that are a whole `name = value`, judged on the value: {kinds}."]
    out += ["", f"## Scan speed (default settings, {args.repeat} passes)", ""]
    out += speed_table(detector.scan, corpora(args.data, rows), args.repeat)
    cpu = platform.processor() or platform.machine()
    out += ["", f"Python {platform.python_version()}, {os.cpu_count()} CPUs ({cpu})."]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
