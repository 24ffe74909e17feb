"""Memory of a running sidecar: at idle, at the peak of large bodies, and after them.

Starts `python -m sidecar run` with a one-route bundle on the built-in mock
(no guards, so the body's cost is the server's and the pipeline's, not a
guard's), reads its RSS from /proc, and sends:

1. one 16 MiB chat request (the default --max-body-bytes), answered;
2. twenty connections each sending 15 MiB of a 16 MiB body and stopping there,
   held open for a while, then closed (the buffered-bytes budget refuses most);
3. ten more 16 MiB requests, one after the other;
4. four 16 MiB requests at once (as many as the default budget holds).

After each step it waits a second and reads RSS again: memory returned to the
system shows as RSS falling back towards the idle figure.

Run: .venv/bin/python bench/memory_bench.py [--repo DIR] [--env KEY=VALUE ...]
(`--repo` runs the sidecar of another checkout, e.g. to compare before a change)
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUNDLE = """\
apiVersion: sidecar/v1
revision: memory-bench
upstreams:
  mock: {builtin: mock, models: [mock-echo]}
routes:
  - match: {model: "mock-*"}
    upstream: mock
roles:
  agent:
    - actions: ["llm.*"]
"""
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for {pid}")


def chat_body(size: int) -> bytes:
    head = b'{"model":"mock-echo","max_tokens":5,"messages":[{"role":"user","content":"'
    tail = b'"}]}'
    return head + b"a" * (size - len(head) - len(tail)) + tail


def post(port: int, body: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        data = b""
        while chunk := sock.recv(1 << 20):
            data += chunk
    return int(data.split(b" ", 2)[1])


def hold(sock: socket.socket, length: int, part: bytes) -> None:
    """Send a head announcing `length` bytes and `part` of them, then stop (not close)."""
    sock.settimeout(10)
    try:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: b\r\n")
        sock.sendall(b"Content-Length: %d\r\n\r\n" % length + part)
    except OSError:
        pass  # refused (503) and closed: the budget at work


def wait_ready(admin: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError("the sidecar exited")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the sidecar did not become ready")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose sidecar runs")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the sidecar")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds before each reading")
    args = parser.parse_args()
    http, admin = free_port(), free_port()
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "bundle.yaml").write_text(BUNDLE)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
        env.update(dict(item.split("=", 1) for item in args.env))
        env.update(
            SIDECAR_BUNDLE=tmp,
            SIDECAR_HTTP=f"127.0.0.1:{http}",
            SIDECAR_ADMIN=f"127.0.0.1:{admin}",
            SIDECAR_DECISION_LOG="none",
            SIDECAR_DRAIN_DELAY_MS="0",
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "run"],
            cwd=args.repo,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_ready(admin, proc)
            time.sleep(args.settle)
            rows.append(("idle", rss_mib(proc.pid)))
            body = chat_body(16 * MIB)
            status = post(http, body)
            time.sleep(args.settle)
            rows.append((f"after one 16 MiB request ({status})", rss_mib(proc.pid)))
            holders = [socket.create_connection(("127.0.0.1", http)) for _ in range(20)]
            senders = [
                threading.Thread(target=hold, args=(sock, len(body), body[: 15 * MIB]))
                for sock in holders
            ]
            for sender in senders:
                sender.start()
            for sender in senders:
                sender.join(timeout=30)
            time.sleep(args.settle)
            rows.append(("20 connections holding 15 MiB each", rss_mib(proc.pid)))
            for sock in holders:
                sock.close()
            time.sleep(args.settle)
            rows.append(("after they closed", rss_mib(proc.pid)))
            for _ in range(10):
                post(http, body)
            time.sleep(args.settle)
            rows.append(("after ten more 16 MiB requests", rss_mib(proc.pid)))
            at_once = [threading.Thread(target=post, args=(http, body)) for _ in range(4)]
            for thread in at_once:
                thread.start()
            for thread in at_once:
                thread.join(timeout=60)
            time.sleep(args.settle)
            rows.append(("after four 16 MiB requests at once", rss_mib(proc.pid)))
            rows.append(("peak (VmHWM)", rss_mib(proc.pid, "VmHWM")))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"| {'moment':<40} | RSS MiB |")
    print(f"|{'-' * 42}|---------|")
    for label, value in rows:
        print(f"| {label:<40} | {value:7.1f} |")
    print(json.dumps({label: round(value, 1) for label, value in rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
