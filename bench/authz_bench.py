"""Authorization cost per call for a large bundle: 100 roles and 1,000 Cedar policies.

Measures the authorize stage as the proxy runs it (principal, action, model,
lazily built call context, Authorizer.decide) on a bundle compiled by the
real loader, in three regimes:

- steady state: a realistic mix (20 callers x 10 models x stream on/off),
  where the per-snapshot decision cache answers all but the first of each;
- decision-cache miss: every call evaluated by Cedar, against the cached
  subset of policies whose scope can match the caller;
- cold: nothing cached at all (a new caller shape on every call).

Run: .venv/bin/python bench/authz_bench.py [--calls N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sidecar.adapters.openai import ADAPTER
from sidecar.authz.authorize import Authorizer
from sidecar.authz.context import CallContext
from sidecar.bundle.compile import load_snapshot
from sidecar.bundle.snapshot import Snapshot
from sidecar.identity.principal import Principal

ROLES = 100
POLICIES = 1000
TENANTS = 50
MODELS = 50


def write_bundle(root: Path) -> None:
    """100 roles (RBAC) plus 1,000 Cedar policies over tenants, models, streaming and size."""
    roles = {
        f"role-{i}": [
            {"actions": ["llm.chat", "llm.responses"], "models": [f"model-{i % MODELS}-*"]},
            {"actions": ["tool.call"], "tools": [f"tool-{i}-*"]},
        ]
        for i in range(ROLES)
    }
    policies = root / "policies"
    policies.mkdir()
    per_file = POLICIES // 10
    for f in range(10):
        lines = []
        for j in range(per_file):
            n = f * per_file + j
            if n % 10 == 9:  # one in ten is a forbid with conditions on the call
                lines.append(
                    f'@id("forbid-{n}")\n'
                    f'forbid (principal in Sidecar::Role::"role-{n % ROLES}", action, '
                    f"resource is Sidecar::Model)\n"
                    f'when {{ context.stream && principal.tenant == "tenant-{n % TENANTS}" }};\n'
                )
            else:
                lines.append(
                    f'@id("permit-{n}")\n'
                    f'permit (principal in Sidecar::Tenant::"tenant-{n % TENANTS}", '
                    f'action == Sidecar::Action::"llm.chat", resource is Sidecar::Model)\n'
                    f'when {{ resource.name like "model-{n % MODELS}-*" }};\n'
                )
        (policies / f"p{f}.cedar").write_text("\n".join(lines))
    doc = {
        "apiVersion": "sidecar/v1",
        "revision": "authz-bench",
        "roles": roles,
        "policies": ["policies/*.cedar"],
    }
    (root / "bundle.yaml").write_text(yaml.safe_dump(doc))


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def run(snapshot: Snapshot, calls: int, regime: str, rng: random.Random) -> list[float]:
    authorizer = snapshot.authorizer
    principals = [
        Principal(
            f"agent-{i}",
            f"tenant-{i % TENANTS}",
            f"agent-{i}",
            roles=frozenset({f"role-{rng.randrange(ROLES)}"}),
            via="api_key",
        )
        for i in range(10_000 if regime == "cold" else 20)
    ]
    bodies = [
        ADAPTER.parse(
            "/v1/chat/completions",
            (
                f'{{"model": "model-{m}-large", "stream": {"true" if s else "false"}, '
                f'"messages": [{{"role": "user", "content": "hello"}}]}}'
            ).encode(),
        )
        for m in range(10)
        for s in (False, True)
    ]
    samples: list[float] = []
    for k in range(calls):
        principal = (
            principals[rng.randrange(len(principals))] if regime != "cold" else principals[k]
        )
        call = bodies[rng.randrange(len(bodies))]
        if regime != "steady state":
            authorizer._cache.clear()
        if regime == "cold":
            authorizer._subsets.clear()
        start = time.perf_counter_ns()
        authorizer.decide(
            principal, call.action, "Model", call.model or "", CallContext(call, principal)
        )
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls in the steady-state run")
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        write_bundle(Path(tmp))
        start = time.perf_counter()
        snapshot = load_snapshot(tmp)
        compile_s = time.perf_counter() - start
    assert isinstance(snapshot.authorizer, Authorizer)
    print(
        f"bundle: {ROLES} roles + {POLICIES} policy-file policies = "
        f"{snapshot.authorizer.policy_count} Cedar policies; "
        f"load+validate+compile {compile_s:.2f} s"
    )
    rows = [
        ("steady state", args.calls),
        ("decision-cache miss", max(500, args.calls // 20)),
        ("cold", max(300, args.calls // 40)),
    ]
    print()
    print("| regime | calls | p50 µs | p99 µs | mean µs |")
    print("|---|---:|---:|---:|---:|")
    results = {}
    for regime, calls in rows:
        samples = run(snapshot, calls, regime, rng)
        p50, p99 = percentiles(samples)
        results[regime] = p50
        print(f"| {regime} | {calls} | {p50:.1f} | {p99:.1f} | {statistics.fmean(samples):.1f} |")
    target = results["steady state"] <= 50
    print()
    print(
        f"- steady-state p50 {results['steady state']:.1f} µs added per call "
        f"(target ≤ 50 µs) **{'PASS' if target else 'FAIL'}**"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
