"""What bounding a bundle before parsing costs at load time.

Bundle loading is off the request path (a worker thread, once per reload), so
the question is only whether the extra scans make reloads noticeably slower:
the YAML event scan is a second pass of libyaml's parser, the JSON and Cedar
scans are regular expressions over the text. Prints one table (median of N).

    .venv/bin/python bench/bundle_load_bench.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from sidecar.bundle.compile import load_snapshot
from sidecar.bundle.load import SHAPE, BundleReadError, read_bundle
from sidecar.bundle.parse import cedar_nesting, parse_json, parse_yaml
from sidecar.bundle.watch import default_bundle_path

_CSafe: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def big_document() -> dict[str, Any]:
    """About 1 MB: a role with 20,000 model globs and 2,000 decision tests."""
    return {
        "apiVersion": "sidecar/v1",
        "revision": "big",
        "upstreams": {"mock": {"builtin": "mock"}},
        "routes": [{"upstream": "mock"}],
        "roles": {"agent": [{"actions": ["llm.*"], "models": [f"m-{i}-*" for i in range(20000)]}]},
        "tests": [
            {
                "name": f"t{i}",
                "principal": "pod",
                "action": "llm.chat",
                "model": f"m-{i}-x",
                "expect": "allow",
            }
            for i in range(2000)
        ],
    }


def rejected(fn: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except BundleReadError:
            return
        raise AssertionError("a hostile bundle was accepted")

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    n = parser.parse_args().repeat
    doc = big_document()
    yaml_bytes = yaml.safe_dump(doc).encode()
    json_bytes = json.dumps(doc).encode()
    policy = "\n".join(
        f'@id("p{i}") permit (principal, action, resource) when '
        f'{{ resource.name like "m-{i}-*" && (context.tokens < {i} || context.stream) }};'
        for i in range(1000)
    )
    rows: list[tuple[str, str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        deep = Path(tmp, "deep")
        deep.mkdir()
        (deep / "bundle.yaml").write_text("x: " + "[" * 30000 + "]" * 30000 + "\n")
        default = default_bundle_path()
        rows += [
            (
                "default bundle",
                "read_bundle (read, bound, parse)",
                median_ms(lambda: read_bundle(default), n),
            ),
            (
                "default bundle",
                "load_snapshot (read + validate + compile)",
                median_ms(lambda: load_snapshot(default), n),
            ),
            (
                f"YAML {len(yaml_bytes) // 1024} KB",
                "yaml.load, CSafeLoader (no bounds)",
                median_ms(lambda: yaml.load(yaml_bytes, Loader=_CSafe), n),
            ),
            (
                f"YAML {len(yaml_bytes) // 1024} KB",
                "parse_yaml (event scan + unique keys)",
                median_ms(lambda: parse_yaml(yaml_bytes, SHAPE), n),
            ),
            (
                f"JSON {len(json_bytes) // 1024} KB",
                "json.loads (no bounds)",
                median_ms(lambda: json.loads(json_bytes), n),
            ),
            (
                f"JSON {len(json_bytes) // 1024} KB",
                "parse_json (depth scan + unique keys)",
                median_ms(lambda: parse_json(json_bytes, SHAPE), n),
            ),
            (
                f"Cedar {len(policy) // 1024} KB, 1000 policies",
                "cedar_nesting",
                median_ms(lambda: cedar_nesting(policy), n),
            ),
            (
                "YAML 30,000 deep (60 KB)",
                "read_bundle -> refused",
                median_ms(rejected(lambda: read_bundle(deep)), n),
            ),
        ]
    print(f"{'input':<34} {'step':<44} {'median ms':>10}")
    for what, step, ms in rows:
        print(f"{what:<34} {step:<44} {ms:>10.2f}")


if __name__ == "__main__":
    main()
