"""How well the egress guard stops SSRF targets, on the labelled development data.

ssrf.jsonl holds URLs a tool must not be sent to (label 1) and ordinary public
URLs (label 0), from the test data of the npm package ssrfcheck. A row counts as
flagged when `check` stops it (for rows that look like one URL: no whitespace,
or a scheme in front) or `scan` finds something in it; detection rate is over
label 1, false-positive rate over label 0, both per source. Positives are also
grouped by the shape of their host, so the misses can be read by category;
the misses are listed, not tuned away (a held-out set from other sources judges).

Detectors that read free text must also stay quiet on ordinary text, so the
benign rows of prompt_injection.jsonl (books, agent task prompts, app prompts)
are scanned with both tool-argument guards and their alarms counted by type.

Run: .venv/bin/python bench/quality_ssrf.py [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sidecar.guards.arg_injection import ArgumentInjectionDetector
from sidecar.guards.egress import EgressChecker

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "eval"
SCHEME = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.\-]*:")


def load(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def url_looking(text: str) -> bool:
    return bool(SCHEME.match(text)) or not any(c.isspace() for c in text.strip())


def category(text: str) -> str:
    """A coarse shape of the row, for reading results; it plays no part in detection."""
    t = text.strip()
    if " " in t and "://" not in t and not t.startswith("http"):
        return "prose"
    scheme = SCHEME.match(t)
    name = scheme[0].strip().rstrip(":").lower() if scheme else ""
    if name and name not in ("http", "https"):
        return "other scheme"
    rest = t[scheme.end() :] if scheme else t
    host = re.split(r"[/?#]", rest.lstrip("/\\"), maxsplit=1)[0]
    if "\\" in rest.split("?")[0] or "@" in host:
        return "userinfo / backslash"
    if not host.strip() or host.strip(".") == "" or " " in host:
        return "empty or broken host"
    if not t.isascii():
        return "unicode host"
    if "[" in host or host.count(":") >= 2:
        return "IPv6"
    bare = host.rsplit(":", 1)[0] if ":" in host else host
    if re.fullmatch(r"(\d{1,3}\.){3}\d{1,3}", bare) and not re.search(r"\b0\d", bare):
        return "IPv4 dotted"
    if re.fullmatch(r"[0-9a-fA-FxX.]+", bare):
        return "IPv4 other spelling"
    return "host name"


def pct(n: int, d: int) -> str:
    return f"{100 * n / d:.1f}%" if d else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the eval directory")
    args = parser.parse_args()

    checker = EgressChecker()
    rows = load(args.data / "ssrf.jsonl")

    by_source: dict[tuple[str, int], list[bool]] = defaultdict(list)
    by_category: dict[str, list[bool]] = defaultdict(list)
    how: Counter[str] = Counter()
    misses: dict[str, list[str]] = defaultdict(list)
    false_alarms: list[tuple[str, str]] = []
    check_only = scan_only = 0
    for row in rows:
        text, label = row["text"], int(row["label"])
        verdict = checker.check(text) if url_looking(text) else None
        findings = checker.scan(text)
        flagged = verdict is not None or bool(findings)
        by_source[(row.get("source", "?"), label)].append(flagged)
        if label == 1:
            cat = category(text)
            by_category[cat].append(flagged)
            if flagged:
                how[verdict or findings[0].type] += 1
                check_only += verdict is not None and not findings
                scan_only += verdict is None and bool(findings)
            else:
                misses[cat].append(text)
        elif flagged:
            false_alarms.append((text, verdict or findings[0].type))

    print("## SSRF development set (ssrf.jsonl)\n")
    print("| source | label | rows | flagged | rate |")
    print("|---|---:|---:|---:|---:|")
    for (source, label), flags in sorted(by_source.items()):
        rate = f"{'detection' if label else 'false positives'} {pct(sum(flags), len(flags))}"
        print(f"| {source} | {label} | {len(flags)} | {sum(flags)} | {rate} |")
    positives = [f for (_, label), flags in by_source.items() if label for f in flags]
    negatives = [f for (_, label), flags in by_source.items() if not label for f in flags]
    print(
        f"| **all** | 1 / 0 | {len(positives)} / {len(negatives)} | "
        f"{sum(positives)} / {sum(negatives)} | detection {pct(sum(positives), len(positives))}, "
        f"false positives {pct(sum(negatives), len(negatives))} |"
    )

    print("\n### Attacks by host shape\n")
    print("| category | rows | flagged | detection |")
    print("|---|---:|---:|---:|")
    for cat, flags in sorted(by_category.items(), key=lambda kv: -len(kv[1])):
        print(f"| {cat} | {len(flags)} | {sum(flags)} | {pct(sum(flags), len(flags))} |")

    print("\n### How attacks were stopped\n")
    print("| finding type | rows |")
    print("|---|---:|")
    for type_, n in how.most_common():
        print(f"| {type_} | {n} |")
    print(f"\nOnly `check` caught {check_only} rows; only `scan` caught {scan_only}.")

    print("\n### Misses (label 1, not flagged)\n")
    if not misses:
        print("none")
    for cat, texts in sorted(misses.items()):
        for text in texts:
            print(f"- {cat}: `{text}`")

    print("\n### False positives (label 0, flagged)\n")
    if not false_alarms:
        print("none")
    for text, type_ in false_alarms:
        print(f"- `{text}` -> {type_}")

    timing(checker, [r["text"] for r in rows])
    free_text(args.data, checker)
    return 0


def timing(checker: EgressChecker, texts: list[str]) -> None:
    per_check: list[float] = []
    per_scan: list[float] = []
    for _ in range(5):
        started = time.perf_counter()
        for text in texts:
            checker.check(text)
        per_check.append((time.perf_counter() - started) / len(texts) * 1e6)
        started = time.perf_counter()
        for text in texts:
            checker.scan(text)
        per_scan.append((time.perf_counter() - started) / len(texts) * 1e6)
    print("\n### Speed (median of 5 passes over the rows)\n")
    print("| call | µs per row |")
    print("|---|---:|")
    print(f"| check | {statistics.median(per_check):.1f} |")
    print(f"| scan | {statistics.median(per_scan):.1f} |")


def free_text(data: Path, checker: EgressChecker) -> None:
    path = data / "prompt_injection.jsonl"
    if not path.exists():
        return
    benign = [r for r in load(path) if int(r["label"]) == 0]
    detector = ArgumentInjectionDetector()
    alarms: dict[str, Counter[str]] = defaultdict(Counter)
    rows_with: dict[str, Counter[str]] = defaultdict(Counter)
    size = sum(len(r["text"]) for r in benign)
    spent = {"egress": 0.0, "arg_injection": 0.0}
    for row in benign:
        source = row.get("source", "?")
        for name, scan in (("egress", checker.scan), ("arg_injection", detector.scan)):
            started = time.perf_counter()
            findings = scan(row["text"])
            spent[name] += time.perf_counter() - started
            for f in findings:
                alarms[name][f.type] += 1
            if findings:
                rows_with[name][source] += 1
    sources = Counter(r.get("source", "?") for r in benign)
    print("\n## Ordinary text (benign rows of prompt_injection.jsonl)\n")
    print("| source | rows | rows with egress findings | rows with arg_injection findings |")
    print("|---|---:|---:|---:|")
    for source, n in sources.most_common():
        e, a = rows_with["egress"][source], rows_with["arg_injection"][source]
        print(f"| {source} | {n} | {e} ({pct(e, n)}) | {a} ({pct(a, n)}) |")
    print("\n| detector | findings by type | µs per KB |")
    print("|---|---|---:|")
    for name in ("egress", "arg_injection"):
        types = ", ".join(f"{t} {n}" for t, n in alarms[name].most_common()) or "none"
        print(f"| {name} | {types} | {spent[name] / (size / 1024) * 1e6:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
