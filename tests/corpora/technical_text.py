"""Technical text that holds no personal data: a generated fixture for PII false positives.

Versions, sizes, ports, ids, timestamps, hashes and code, the text an agent
reads in logs, configs, tool results and tool-call arguments, with numbers
drawn from a seeded generator (so every run sees the same rows). Their
numbers have the shapes PII detectors look for: four dotted numbers up to 255,
ten-digit integers with a valid area code, long hex. None of these rows is
personal data, so a detector should flag none.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable

Row = tuple[str, str]  # (class, text)

PACKAGES = ("openssl", "nginx", "chrome", "node", "kubectl", "terraform", "mylib", "agent-sdk")
_HEX = "0123456789abcdef"


def _ten(rng: random.Random) -> int:
    """A ten-digit integer that reads as a valid US number (area and exchange 2-9)."""
    return int(
        f"{rng.randint(2, 9)}{rng.randint(10, 99)}{rng.randint(2, 9)}{rng.randint(0, 999999):06d}"
    )


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_HEX) for _ in range(n))


def _quad(rng: random.Random) -> str:
    return ".".join(
        str(x)
        for x in (rng.randint(1, 20), rng.randint(0, 40), rng.randint(0, 99), rng.randint(0, 255))
    )


def _versions(rng: random.Random) -> str:
    v, pkg = _quad(rng), rng.choice(PACKAGES)
    return rng.choice(
        (
            f"Version {v}",
            f"{pkg} version {v} is installed",
            f"upgraded {pkg} to {v}",
            f"pip install {pkg}=={v}",
            f"requires {pkg}>={v}",
            f"build {v} (release)",
            f"Firmware: {v}",
            f'{{"name": "{pkg}", "version": "{v}"}}',
            f'[assembly: AssemblyVersion("{v}")]',
            f"{pkg} {v}-beta.2 is out",
            f"ver. {v}",
            f"FROM {pkg}:{v}",
        )
    )


def _sizes(rng: random.Random) -> str:
    n = rng.choice((2147483648, 4294967296, 1073741824, _ten(rng)))
    return rng.choice(
        (
            f"{n} bytes",
            f"Version 1.2.3.4 wrote {n} bytes",
            f"allocated {n} bytes of heap",
            f"size: {n} B",
            f'{{"bytes": {n}}}',
            f'{{"path": "/data/x.bin", "size": {n}, "mode": 420}}',
            f"Content-Length: {n}",
            f"max_memory={n}",
            f"disk usage {n} KB",
            f"transferred {n}B in 3.2s",
            f"heap_size_bytes: {n}",
            f"{n} rows scanned",
            f"read {n} tokens",
        )
    )


def _ports(rng: random.Random) -> str:
    p, q, r = (rng.randint(1024, 65535) for _ in range(3))
    return rng.choice(
        (
            f"listening on port {p}",
            f"curl http://localhost:{p}/healthz",
            f"--port={p}",
            f"EXPOSE {p} {q}",
            f"ports {p}, {q}, {r}",
            f"forwarding {p} -> {q}",
            f'{{"port": {p}, "targetPort": {q}}}',
        )
    )


def _ids(rng: random.Random) -> str:
    n = _ten(rng)
    return rng.choice(
        (
            f"user id {n}",
            f"order_id={n}",
            f'{{"id": {n}, "status": "done"}}',
            f"request #{n} failed",
            f"ticket ID: {n}",
            f"job {n} finished",
            f"trace_id={n}",
            f"row {n} updated",
            f"GET /api/items/{n}",
            f"issue {n} closed",
            f'{{"account_id": {n}}}',
        )
    )


def _timestamps(rng: random.Random) -> str:
    epoch = rng.randint(1_000_000_000, 1_999_999_999)
    ms = epoch * 1000 + rng.randint(0, 999)
    n = _ten(rng)
    return rng.choice(
        (
            f"ts={epoch}",
            f"created_at: {epoch}",
            f'{{"timestamp": {epoch}}}',
            f"{ms} ms since epoch",
            f"took {n} ms",
            f"elapsed {n} ns",
            f"uptime {n} seconds",
            f"expires {epoch}",
            "2024-01-15T10:30:00.123Z request done",
            f'{{"ts": {ms}, "duration_ns": {n}}}',
        )
    )


def _hashes(rng: random.Random) -> str:
    return rng.choice(
        (
            f"commit {_hex(rng, 40)}",
            f"sha256:{_hex(rng, 64)}",
            f'ETag: "{_hex(rng, 32)}"',
            f"git checkout {_hex(rng, 7)}",
            f"md5 {_hex(rng, 32)}  archive.tar.gz",
            f"image@sha256:{_hex(rng, 64)}",
            f"object {_hex(rng, 24)} not found",
        )
    )


def _code(rng: random.Random) -> str:
    n = rng.choice((2147483647, 2147483648, 4294967295, _ten(rng)))
    name = "".join(rng.choice(string.ascii_lowercase) for _ in range(5))
    return rng.choice(
        (
            f"int {name} = {n};",
            f"MAX_{name.upper()} = {n}",
            f"return {n}",
            f"if (count > {n}) {{",
            f"assert len(buf) == {n}",
            f"const LIMIT = {n};",
            f"1 << 31 == {n}",
            f"{name}({n}, 0)",
            f"x = 0x{_hex(rng, 8)}",
            f"long v = {n}L;",
            f"INT_MAX + 1 = {n}",
            f"{name}[{n}] = 0",
        )
    )


CLASSES: dict[str, Callable[[random.Random], str]] = {
    "versions": _versions,
    "sizes": _sizes,
    "ports": _ports,
    "ids": _ids,
    "timestamps": _timestamps,
    "hashes": _hashes,
    "code": _code,
}


def rows(per_class: int = 200, seed: int = 20261207) -> list[Row]:
    """`per_class` texts of each class, the same for the same seed."""
    rng = random.Random(seed)
    return [(cls, make(rng)) for cls, make in CLASSES.items() for _ in range(per_class)]
