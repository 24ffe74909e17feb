"""Instructions per proxied call, counted by callgrind: a figure other load cannot move.

On the shared 2-core machine req/s and even CPU µs per call swing by 10-30 % with
whatever else runs, which hides changes of a few per cent. Valgrind's callgrind
counts the instructions the sidecar's process executes (all its threads, user space
only, no kernel time), and that count barely moves between runs (about ±2 % here:
timers, the garbage collector and the decision-log thread's batching vary a little).

It starts the bench's fake upstream and one sidecar under callgrind on the chosen
bundle, warms it up with wrk, zeroes the counters, sends `--seconds` of load at four
connections, dumps the counters and prints instructions per call. A call runs about
50 times slower under valgrind, so a run takes a minute or two, most of it start-up.

    .venv/bin/python bench/proxy_instructions.py                    # default bundle
    .venv/bin/python bench/proxy_instructions.py --guards none      # its guards removed
    .venv/bin/python bench/proxy_instructions.py --repo OLD_CHECKOUT # another checkout

Needs `valgrind` (Debian: `apt-get install valgrind`) and `wrk` on PATH. The count says
nothing about cache misses or system calls, which the proxy bench's CPU µs per call
includes: use it to compare two versions of the Python work, not as a speed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import proxy_bench as pb

READY_DEADLINE_S = 300.0  # start-up under valgrind takes a minute or more
CONNECTIONS = 4


def _bundle(upstream_port: int, guards: str) -> str:
    doc: dict[str, Any] = yaml.safe_load(pb._default_bundle_yaml(upstream_port))
    if guards == "none":
        doc.pop("guards", None)
    return str(yaml.safe_dump(doc, sort_keys=False))


def _ready(admin_port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_DEADLINE_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            url = f"http://{pb.HOST}:{admin_port}/readyz"
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("the sidecar under callgrind did not become ready")


def _total(dump: Path) -> int:
    match = re.search(r"^(?:summary|totals):\s+(\d+)", dump.read_text(errors="replace"), re.M)
    if match is None:
        raise RuntimeError(f"no instruction total in {dump}")
    return int(match.group(1))


def measure(repo: str | None, guards: str, seconds: float) -> tuple[float, int]:
    """(instructions per call, calls counted)."""
    for tool in ("valgrind", "callgrind_control", "wrk"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found on PATH (Debian: valgrind, wrk)")
    work = Path(tempfile.mkdtemp(prefix="proxy-instructions-"))
    with pb._children() as kids:
        upstream, upstream_port = pb._spawn_helper("upstream", work)
        kids.append(upstream)
        bundle_dir = work / "bundle"
        bundle_dir.mkdir()
        (bundle_dir / "bundle.yaml").write_text(_bundle(upstream_port, guards))
        http_port, admin_port = pb._free_port(), pb._free_port()
        out = work / "callgrind.out"
        argv = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "sidecar",
            "run",
            "--bundle",
            str(bundle_dir),
            "--http",
            f"{pb.HOST}:{http_port}",
            "--admin",
            f"{pb.HOST}:{admin_port}",
        ]
        cwd = Path(repo) if repo else pb.REPO_ROOT
        sidecar = pb._spawn("sidecar", argv, work, env=pb._sidecar_env(), cwd=cwd)
        kids.append(sidecar)
        _ready(admin_port, sidecar.proc)
        script = pb._write_lua(work, "plain", pb.request_body("default", False))
        pb._wrk(http_port, script, CONNECTIONS, 5)  # warm-up: first calls, caches
        pid = str(sidecar.proc.pid)
        subprocess.run(["callgrind_control", "-z", pid], capture_output=True, check=True)
        result = pb._wrk(http_port, script, CONNECTIONS, seconds)
        subprocess.run(["callgrind_control", "-d", pid], capture_output=True, check=True)
        if result.non_2xx or not result.requests:
            raise RuntimeError(f"the load was not served: {result}")
        dumps = sorted(work.glob("callgrind.out.*"))
        if not dumps:
            raise RuntimeError("callgrind wrote no dump")
        return _total(dumps[-1]) / result.requests, result.requests


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--guards", choices=("bundle", "none"), default="bundle")
    p.add_argument("--repo", help="run the sidecar of another checkout (from its root)")
    p.add_argument("--seconds", type=float, default=10.0, help="load counted (default 10)")
    args = p.parse_args()
    per_call, calls = measure(args.repo, args.guards, args.seconds)
    guards = "its guards" if args.guards == "bundle" else "no guards"
    print(f"default bundle, {guards}: {per_call:,.0f} instructions per call ({calls} calls)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
