"""How well, and how fast, the built-in PII detector works on the labelled development data.

Recall is counted per entity type: a gold span is found when a finding of the
matching type overlaps it, and an exact match when the spans are equal (the
redaction then covers exactly the value). False positives are counted on the
label-0 rows of pii_structured.jsonl, per near-miss class, since a detector
that flags UUIDs or ISBNs would redact half of every log line an agent reads.
pii_sentences.jsonl labels many types this detector does not claim to find
(names, addresses, dates); those are listed with their counts, not scored.

Speed is the median of several passes, in microseconds per KB of text, on
book prose with every digit removed (the common case: nothing for the digit
anchored types to look at), on the same prose as it is, on that prose with one
PII row appended to each passage, and on texts made only of PII rows (where
the phone matcher runs most).

Run: .venv/bin/python bench/quality_pii.py [--data DIR] [--passes N] [--regions US,GB]
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

from sidecar.guards.finding import Finding
from sidecar.guards.pii import PiiDetector

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from corpora.technical_text import rows as technical_rows

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "eval"
GOLD_TYPES = {  # the data's type names -> ours
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
}
PROSE_SOURCE = "book_cloze"
DIGITS = re.compile(r"[0-9]")


def load(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def overlaps(f: Finding, span: dict[str, Any]) -> bool:
    return f.start < int(span["end"]) and int(span["start"]) < f.end


class Recall:
    def __init__(self) -> None:
        self.gold: Counter[str] = Counter()
        self.found: Counter[str] = Counter()
        self.exact: Counter[str] = Counter()

    def add(self, findings: list[Finding], spans: list[dict[str, Any]]) -> None:
        for span in spans:
            ours = GOLD_TYPES.get(span["type"])
            if ours is None:
                continue
            self.gold[ours] += 1
            hits = [f for f in findings if f.type == ours and overlaps(f, span)]
            if hits:
                self.found[ours] += 1
            if any(f.start == span["start"] and f.end == span["end"] for f in hits):
                self.exact[ours] += 1

    def table(self) -> list[str]:
        lines = [
            "| type | gold spans | found (overlap) | recall | exact span | exact recall |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for t in PiiDetector.TYPES:
            n = self.gold[t]
            if n:
                lines.append(
                    f"| {t} | {n} | {self.found[t]} | {pct(self.found[t], n)} "
                    f"| {self.exact[t]} | {pct(self.exact[t], n)} |"
                )
        n, found, exact = (
            sum(self.gold.values()),
            sum(self.found.values()),
            sum(self.exact.values()),
        )
        lines.append(f"| **all** | {n} | {found} | {pct(found, n)} | {exact} | {pct(exact, n)} |")
        return lines


def pct(a: int, b: int) -> str:
    return f"{100 * a / b:.1f}%" if b else "-"


def structured(detector: PiiDetector, rows: list[dict[str, Any]]) -> list[str]:
    recall = Recall()
    negatives: Counter[str] = Counter()
    flagged: Counter[str] = Counter()
    flagged_as: dict[str, Counter[str]] = defaultdict(Counter)
    stray = 0  # findings on positive rows that overlap no gold span
    for row in rows:
        findings = detector.scan(row["text"])
        if row["label"]:
            recall.add(findings, row["spans"])
            stray += sum(1 for f in findings if not any(overlaps(f, s) for s in row["spans"]))
        else:
            negatives[row["entity"]] += 1
            if findings:
                flagged[row["entity"]] += 1
                flagged_as[row["entity"]].update(f.type for f in findings)
    out = ["### pii_structured.jsonl: recall on label-1 rows", "", *recall.table(), ""]
    out += [
        f"Findings on label-1 rows that overlap no gold span: {stray}.",
        "",
        "### pii_structured.jsonl: false positives on label-0 rows (near misses)",
        "",
        "| near-miss class | rows | rows flagged | false-positive rate | flagged as |",
        "|---|---:|---:|---:|---|",
    ]
    for cls in sorted(negatives):
        kinds = ", ".join(f"{t} {n}" for t, n in flagged_as[cls].most_common()) or "-"
        out.append(
            f"| {cls} | {negatives[cls]} | {flagged[cls]} "
            f"| {pct(flagged[cls], negatives[cls])} | {kinds} |"
        )
    total, hit = sum(negatives.values()), sum(flagged.values())
    out.append(f"| **all** | {total} | {hit} | {pct(hit, total)} | |")
    return out


def technical(detector: PiiDetector) -> list[str]:
    """False positives on generated technical text, which holds no personal data at all."""
    texts: Counter[str] = Counter()
    flagged: Counter[str] = Counter()
    flagged_as: dict[str, Counter[str]] = defaultdict(Counter)
    for cls, text in technical_rows():
        texts[cls] += 1
        findings = detector.scan(text)
        if findings:
            flagged[cls] += 1
            flagged_as[cls].update(f.type for f in findings)
    out = [
        "### Generated technical text (tests/corpora/technical_text.py): false positives",
        "",
        "| class | texts | texts flagged | false-positive rate | flagged as |",
        "|---|---:|---:|---:|---|",
    ]
    for cls in texts:
        kinds = ", ".join(f"{t} {n}" for t, n in flagged_as[cls].most_common()) or "-"
        out.append(
            f"| {cls} | {texts[cls]} | {flagged[cls]} | {pct(flagged[cls], texts[cls])} | {kinds} |"
        )
    total, hit = sum(texts.values()), sum(flagged.values())
    out.append(f"| **all** | {total} | {hit} | {pct(hit, total)} | |")
    return out


def sentences(detector: PiiDetector, rows: list[dict[str, Any]]) -> list[str]:
    recall = Recall()
    unsupported: Counter[str] = Counter()
    stray: Counter[str] = Counter()
    negatives = flagged = 0
    for row in rows:
        findings = detector.scan(row["text"])
        recall.add(findings, row["spans"])
        unsupported.update(s["type"] for s in row["spans"] if s["type"] not in GOLD_TYPES)
        for f in findings:
            if not any(
                GOLD_TYPES.get(s["type"]) == f.type and overlaps(f, s) for s in row["spans"]
            ):
                stray[f.type] += 1
        if not row["label"]:
            negatives += 1
            flagged += bool(findings)
    out = ["### pii_sentences.jsonl: recall on the supported types", "", *recall.table(), ""]
    strays = ", ".join(f"{t} {n}" for t, n in stray.most_common()) or "none"
    out += [
        f"Label-0 rows flagged: {flagged} of {negatives}. "
        f"Findings that match no gold span of their type: {strays}.",
        "",
        "Types in the data that this detector does not claim to find:",
        "",
        "| type | spans |",
        "|---|---:|",
    ]
    out += [f"| {t} | {n} |" for t, n in unsupported.most_common()]
    return out


def speed(detector: PiiDetector, data: Path, passes: int) -> list[str]:
    corpora: list[tuple[str, list[str]]] = []
    injection = data / "prompt_injection.jsonl"
    if injection.exists():
        prose = [
            r["text"]
            for r in load(injection)
            if r["label"] == 0 and PROSE_SOURCE in str(r.get("source", ""))
        ]
        corpora.append(("book prose, digits removed", [DIGITS.sub("", t) for t in prose]))
        corpora.append(("book prose as is", prose))
    rows = load(data / "pii_structured.jsonl")
    positives = [r["text"] for r in rows if r["label"]]
    if corpora:
        prose = corpora[1][1]
        mixed = [f"{t} {positives[i % len(positives)]}" for i, t in enumerate(prose)]
        corpora.append(("book prose, one PII row appended to each", mixed))
    chunks = [" ".join(positives[i : i + 16]) for i in range(0, len(positives), 16)]
    corpora.append(("pii_structured label-1 rows, 16 a text", chunks))
    # The same texts without the phone matcher, to show what it costs.
    no_phone = PiiDetector(types=[t for t in PiiDetector.TYPES if t != "PHONE"])
    lines = [
        "| text | texts | KB | findings | µs per KB | µs per text | µs per KB without PHONE |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, texts in corpora:
        kb = sum(len(t.encode()) for t in texts) / 1024
        findings = sum(len(detector.scan(t)) for t in texts)  # also warms up
        full, bare = timed(detector, texts, passes), timed(no_phone, texts, passes)
        lines.append(
            f"| {name} | {len(texts)} | {kb:.0f} | {findings} "
            f"| {full / kb:.1f} | {full / len(texts):.1f} | {bare / kb:.1f} |"
        )
    lines += ["", f"Times are the median of {passes} passes over each corpus."]
    return lines


def timed(detector: PiiDetector, texts: list[str], passes: int) -> float:
    """Microseconds for one pass over `texts`, the median of `passes`."""
    times = []
    for _ in range(passes):
        t0 = time.perf_counter()
        for t in texts:
            detector.scan(t)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the eval directory")
    parser.add_argument("--passes", type=int, default=5, help="timing passes per corpus")
    parser.add_argument(
        "--regions", default="US", help="phone regions, comma-separated (default: US)"
    )
    args = parser.parse_args()
    regions = [r.strip() for r in args.regions.split(",") if r.strip()]
    detector = PiiDetector(phone_regions=regions)
    out = [f"## PII detector quality (phone regions: {', '.join(regions) or 'none'})", ""]
    out += structured(detector, load(args.data / "pii_structured.jsonl"))
    out += [""]
    out += technical(detector)
    out += [""]
    out += sentences(detector, load(args.data / "pii_sentences.jsonl"))
    out += ["", "### Speed", ""]
    out += speed(detector, args.data, args.passes)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
