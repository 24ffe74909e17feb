"""Guard quality and cost against the targets, over the development data in ../shared/eval/.

Prints the per-source and per-type tables of each detector (bench/quality_*.py),
then one table of the targets with PASS or FAIL: detection and false-positive
rates, leaks when PII-bearing rows are streamed in random 1-8 character
pieces, and the input stage's p50 on a 2 KB prompt.

    .venv/bin/python bench/guards.py [--data DIR] [--summary-only]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sidecar.call import Text
from sidecar.guards import redact
from sidecar.guards.config import compile_guards
from sidecar.guards.egress import EgressChecker
from sidecar.guards.finding import Finding
from sidecar.guards.injection import PromptInjectionDetector
from sidecar.guards.pii import PiiDetector
from sidecar.guards.secrets import SecretsDetector
from sidecar.guards.stage import Record, Subject, check_input
from sidecar.guards.stream import StreamScanner

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from corpora.technical_text import rows as technical_rows  # noqa: E402

DETAIL = ("quality_injection.py", "quality_pii.py", "quality_secrets.py", "quality_ssrf.py")


def rows(data: Path, name: str) -> list[dict[str, Any]]:
    with (data / name).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def rate(hit: int, total: int) -> float:
    return 100.0 * hit / total if total else 0.0


def injection(data: Path) -> tuple[float, float]:
    d = PromptInjectionDetector()
    r = rows(data, "prompt_injection.jsonl")
    attacks = [x for x in r if x["label"] == 1]
    benign = [x for x in r if x["label"] == 0]
    caught = sum(1 for x in attacks if d.scan(x["text"]))
    false = sum(1 for x in benign if d.scan(x["text"]))
    return rate(caught, len(attacks)), rate(false, len(benign))


def pii(data: Path) -> tuple[float, float]:
    d = PiiDetector()
    r = rows(data, "pii_structured.jsonl")
    gold = total = 0
    for x in (x for x in r if x["label"] == 1):
        spans = [s for s in x["spans"] if s["type"] in ("CREDIT_CARD", "IBAN_CODE", "IBAN")]
        if not spans:
            continue
        found = d.scan(x["text"])
        for s in spans:
            total += 1
            gold += any(f.start < s["end"] and s["start"] < f.end for f in found)
    negatives = [x for x in r if x["label"] == 0]
    false = sum(1 for x in negatives if d.scan(x["text"]))
    return rate(gold, total), rate(false, len(negatives))


def pii_technical() -> float:
    """False positives on generated technical text (versions, sizes, ids, code...)."""
    d = PiiDetector()
    texts = [text for _, text in technical_rows()]
    return rate(sum(1 for t in texts if d.scan(t)), len(texts))


def secrets(data: Path) -> tuple[float, float]:
    d = SecretsDetector()
    r = rows(data, "secrets.jsonl")
    keys = [x for x in r if x["label"] == 1]
    placeholders = [x for x in r if x["label"] == 0 and "placeholder" in x["kind"]]

    def covered(x: dict[str, Any]) -> bool:
        text, secret = x["text"], x["secret"]
        at = text.find(secret)
        found = d.scan(text)
        if at < 0:
            return bool(found)
        return any(f.start <= at + len(secret) and at < f.end for f in found)

    return rate(sum(covered(x) for x in keys), len(keys)), rate(
        sum(1 for x in placeholders if d.scan(x["text"])), len(placeholders)
    )


def holds_url(text: str) -> bool:
    """A scheme, a `//` start, or one whitespace-free token: something a tool could fetch."""
    t = text.strip()
    return "://" in t or t.startswith("//") or not any(ch.isspace() for ch in t)


def ssrf(data: Path) -> tuple[int, int, int, int, list[str]]:
    """Unsafe rows are counted when they hold a URL; the others are returned to be listed
    (a labelled row that holds no URL measures the data, not the guard). Public rows all
    count, URL or not."""
    c = EgressChecker()
    r = rows(data, "ssrf.jsonl")

    def flagged(text: str) -> bool:
        return c.check(text) is not None or bool(c.scan(text))

    unsafe = [x for x in r if x["label"] == 1 and holds_url(x["text"])]
    no_url = [x["text"] for x in r if x["label"] == 1 and not holds_url(x["text"])]
    public = [x for x in r if x["label"] == 0]
    return (
        sum(flagged(x["text"]) for x in unsafe),
        len(unsafe),
        sum(flagged(x["text"]) for x in public),
        len(public),
        no_url,
    )


def stream_leaks(data: Path, seed: int = 7) -> tuple[int, int]:
    """Rows with PII streamed in random 1-8 character pieces: values that got out raw."""
    d = PiiDetector()
    rng = random.Random(seed)
    leaks = checked = 0
    for x in (x for x in rows(data, "pii_structured.jsonl") if x["label"] == 1):
        text = x["text"]
        whole = d.scan(text)
        scanner = StreamScanner(d.scan)
        out: list[str] = []
        pos = 0
        while pos < len(text):
            n = rng.randint(1, 8)
            release = scanner.feed(text[pos : pos + n])
            pos += n
            out.append(_placeholders(release.text, release.findings))
        release = scanner.flush()
        out.append(_placeholders(release.text, release.findings))
        streamed = "".join(out)
        for f in whole:
            checked += 1
            leaks += text[f.start : f.end] in streamed
    return leaks, checked


def _placeholders(text: str, findings: list[Finding]) -> str:
    return redact.apply(text, [(f, "placeholder") for f in findings])


def input_stage_p50() -> float:
    gs, _ = compile_guards(
        {
            "input": [
                {"id": "prompt-injection", "kind": "prompt_injection"},
                {"id": "secrets", "kind": "secrets"},
            ]
        },
        b"bench",
    )
    subject = Subject("bench", "t", "m", frozenset())
    prompt = (
        "Please summarize the quarterly report for the operations team, focusing on delays "
        "in the northern region and the new supplier contracts. "
    ) * 16
    prompt = prompt[:2000]
    loop = asyncio.new_event_loop()
    samples = []
    for i in range(2200):
        holder = {"content": prompt}
        texts = [Text("user", prompt, holder, "content")]
        t0 = time.perf_counter()
        loop.run_until_complete(check_input(gs, texts, subject, Record()))
        if i >= 200:
            samples.append((time.perf_counter() - t0) * 1e6)
    loop.close()
    return statistics.median(samples)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "eval")
    p.add_argument("--summary-only", action="store_true", help="skip the per-source tables")
    args = p.parse_args()
    if not args.summary_only:
        for script in DETAIL:
            print(f"\n<!-- bench/{script} -->")
            sys.stdout.flush()
            subprocess.run(
                [sys.executable, str(HERE / script), "--data", str(args.data)], check=False
            )
    inj_det, inj_fp = injection(args.data)
    pii_rec, pii_fp = pii(args.data)
    pii_tech = pii_technical()
    sec_rec, sec_fp = secrets(args.data)
    bad_hit, bad_n, ok_hit, ok_n, no_url = ssrf(args.data)
    leaks, entities = stream_leaks(args.data)
    p50 = input_stage_p50()
    checks = [
        ("prompt injection caught", f"{inj_det:.1f} %", "≥ 85 %", inj_det >= 85),
        ("prompt injection false positives", f"{inj_fp:.1f} %", "≤ 1 %", inj_fp <= 1),
        ("PII recall, cards and IBANs", f"{pii_rec:.1f} %", "≥ 99 %", pii_rec >= 99),
        ("PII false positives, near misses", f"{pii_fp:.1f} %", "≤ 1 %", pii_fp <= 1),
        ("PII false positives, technical text", f"{pii_tech:.1f} %", "≤ 1 %", pii_tech <= 1),
        ("secrets recall", f"{sec_rec:.1f} %", "≥ 99 %", sec_rec >= 99),
        ("secrets false positives, placeholders", f"{sec_fp:.1f} %", "≤ 1 %", sec_fp <= 1),
        ("SSRF unsafe URLs blocked", f"{bad_hit}/{bad_n}", "all", bad_hit == bad_n),
        ("SSRF public URLs blocked", f"{ok_hit}/{ok_n}", "none", ok_hit == 0),
        ("streamed PII released raw", f"{leaks}/{entities}", "0", leaks == 0),
        ("input stage p50, 2 KB prompt", f"{p50:.1f} µs", "≤ 150 µs", p50 <= 150),
    ]
    print(f"\n## Targets ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n")
    print("| check | measured | target | |")
    print("|---|---:|---:|---|")
    for name, value, target, ok in checks:
        print(f"| {name} | {value} | {target} | {'PASS' if ok else '**FAIL**'} |")
    if no_url:
        print(
            "\nRows labelled unsafe that hold no URL (not counted above; listed, not tuned): "
            + "; ".join(f"`{t}`" for t in no_url)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
