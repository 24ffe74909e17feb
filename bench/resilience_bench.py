"""Throughput and p99 while the primary upstream fails half its calls, against a healthy run.

One run starts two fast fake upstreams (a primary and a backup, both from
proxy_bench.py) and, for each scenario, a sidecar whose `gpt-*` route sends to the
primary with the backup as fallback:

* healthy    — the primary answers every call;
* failing    — the primary answers every second call with 503; breaker and fallback on
  (a failure ratio of 0.5 over 10 s opens the breaker for 1 s, doubling while it stays
  down, so most calls go straight to the backup);
* no breaker — the same failures with the breaker disabled: every call tries the
  primary first and half of them fall back (what the breaker saves).

Load is wrk at 32 connections, plain chat completions. The sidecar's /metrics tell
how many calls fell back.

Run: .venv/bin/python bench/resilience_bench.py [--seconds 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import re
import statistics
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import proxy_bench as pb

SCENARIOS = ("healthy", "failing", "no breaker")
BREAKER = "{failure_ratio: 0.5, window_s: 10, min_calls: 20, open_ms: 1000, max_open_ms: 8000}"
NO_BREAKER = "{consecutive_failures: 1000000, min_calls: 1000000}"


def bundle(primary: int, backup: int, breaker: str) -> str:
    return f"""\
apiVersion: sidecar/v1
revision: resilience-bench
upstreams:
  primary:
    base_url: http://{pb.HOST}:{primary}
    api_key: {{env: BENCH_KEY}}
    retry: {{attempts: 1}}
    breaker: {breaker}
  backup:
    base_url: http://{pb.HOST}:{backup}
    api_key: {{env: BENCH_KEY}}
routes:
  - match: {{path: {pb.CHAT_PATH}, model: "gpt-*"}}
    upstream: primary
    fallbacks: [{{upstream: backup}}]
roles:
  agent:
    - actions: [llm.chat]
      models: ["gpt-*"]
"""


def fallbacks(admin_port: int) -> float:
    with urllib.request.urlopen(f"http://{pb.HOST}:{admin_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("sidecar_route_fallbacks_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


@contextmanager
def children() -> Iterator[list[pb.Child]]:
    started: list[pb.Child] = []
    try:
        yield started
    finally:
        for child in reversed(started):
            child.stop()


def run(seconds: float, rounds: int) -> dict[str, dict[str, Any]]:
    workdir = Path(tempfile.mkdtemp(prefix="resilience-bench-"))
    script = pb._write_lua(workdir, "post", pb.request_body("minimal", stream=False))
    results: dict[str, dict[str, Any]] = {
        s: {"rps": [], "p50": [], "p99": [], "fb": []} for s in SCENARIOS
    }
    with children() as kids:
        ok, ok_port = pb._spawn_helper("upstream", workdir, name="primary-ok")
        kids.append(ok)
        env = {**pb._sidecar_env(), "BENCH_FAIL_EVERY": "2"}
        bad, bad_port = pb._spawn_helper("upstream", workdir, env=env, name="primary-bad")
        kids.append(bad)
        spare, spare_port = pb._spawn_helper("upstream", workdir, name="backup")
        kids.append(spare)
        setups = {
            "healthy": (ok_port, BREAKER),
            "failing": (bad_port, BREAKER),
            "no breaker": (bad_port, NO_BREAKER),
        }
        for r in range(rounds):
            for name in SCENARIOS:
                primary, breaker = setups[name]
                bdir = workdir / f"bundle-{r}-{name.replace(' ', '-')}"
                bdir.mkdir()
                (bdir / "bundle.yaml").write_text(bundle(primary, spare_port, breaker))
                child, port, _ = pb._start_sidecar(workdir, bdir, r * 10 + SCENARIOS.index(name))
                admin = _admin_port(child)
                try:
                    pb._wrk(port, script, 32, 2)  # warm up
                    before = fallbacks(admin)
                    res = pb._wrk(port, script, 32, seconds)
                    after = fallbacks(admin)
                finally:
                    child.stop()
                if res.non_2xx or any(res.errors.values()):
                    raise RuntimeError(f"{name}: {res.non_2xx} non-2xx, errors {res.errors}")
                out = results[name]
                out["rps"].append(res.rps)
                out["p50"].append(res.p50_ms)
                out["p99"].append(res.p99_ms)
                out["fb"].append(min(1.0, (after - before) / max(1, res.requests)))
                print(
                    f"  round {r + 1} {name:<10} {res.rps:8,.0f} req/s  p50 {res.p50_ms:.3f} ms"
                    f"  p99 {res.p99_ms:.3f} ms  fell back {100 * out['fb'][-1]:.1f} %",
                    flush=True,
                )
    return results


def _admin_port(child: pb.Child) -> int:
    argv = child.proc.args
    assert isinstance(argv, list)
    admin = str(argv[argv.index("--admin") + 1])
    m = re.search(r":(\d+)$", admin)
    assert m is not None
    return int(m.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = run(args.seconds, args.rounds)
    med = {k: {m: statistics.median(v[m]) for m in v} for k, v in results.items()}
    base = med["healthy"]
    print()
    print(
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC — {platform.machine()}, Python "
        f"{platform.python_version()}, wrk -c32, {args.seconds:g} s x {args.rounds} rounds, medians"
    )
    print()
    print(
        "| scenario | req/s @32 | vs healthy | p50 (ms) | p99 (ms) | p99 vs healthy | fell back |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in SCENARIOS:
        m = med[name]
        print(
            f"| {name} | {m['rps']:,.0f} | {100 * m['rps'] / base['rps']:.1f} % | {m['p50']:.3f} "
            f"| {m['p99']:.3f} | {m['p99'] / base['p99']:.2f}x | {100 * m['fb']:.1f} % |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
