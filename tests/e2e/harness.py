"""Harness for e2e tests: run the real ``sidecar`` CLI as a subprocess.

Every test gets its own sidecar process on free loopback ports (so tests are
independent and a crash in one cannot poison another).  The sidecar's stderr goes
to a file under ``tmp_path``; conftest attaches its tail to a failing test's report.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BUNDLE_FILE = REPO_ROOT / "policy_bundles" / "default" / "bundle.yaml"

OPENAI_KEY = "injected-openai-key-123"
ANTHROPIC_KEY = "injected-anthropic-key-456"
AGENT_KEY = "agent-secret-should-not-leak"

READY_TIMEOUT = 10.0
RELOAD_WITHIN = 2.0  # the SPEC's promise for hot reload


def free_port() -> int:
    """A port that was free a moment ago (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sidecar_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a sidecar subprocess: keys for the fakes, nothing that leaks.

    Provider keys and proxy settings of the developer's shell are removed so a test
    can never reach (or bill) a real provider, and SIDECAR_* settings cannot change
    what a test runs.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SIDECAR_", "OTEL_"))
        and k.upper()
        not in {
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "NO_PROXY",
        }
    }
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env["PYTHONUNBUFFERED"] = "1"
    env["FAKE_KEY"] = OPENAI_KEY
    env["FAKE_ANTHROPIC_KEY"] = ANTHROPIC_KEY
    # SIGTERM drains for 5 s by default (for a Kubernetes endpoints controller); tests
    # stop at once unless they test draining itself.
    env["SIDECAR_DRAIN_DELAY_MS"] = "0"
    if extra:
        env.update(extra)
    return env


def run_cli(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m sidecar ARGS`` to completion (for ``check`` and ``--help``)."""
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        capture_output=True,
        text=True,
        env=sidecar_env(env),
        cwd=REPO_ROOT,
        timeout=timeout,
        check=False,
    )


# ---------------------------------------------------------------------- bundles


def standard_bundle(
    fake_url: str,
    claude_url: str,
    *,
    revision: str = "r1",
    fake_name: str = "fake",
) -> dict[str, Any]:
    """The bundle most tests use: gpt-* and embeddings to ``fake``, claude-* to ``claude``."""
    return {
        "apiVersion": "sidecar/v1",
        "revision": revision,
        "upstreams": {
            fake_name: {
                "provider": "openai",
                "base_url": fake_url,
                "api_key": {"env": "FAKE_KEY"},
                "headers": {"X-Static": "yes"},
                "models": ["gpt-4o", "gpt-4o-mini"],
            },
            "claude": {
                "provider": "anthropic",
                "base_url": claude_url,
                "api_key": {"env": "FAKE_ANTHROPIC_KEY"},
                "models": ["claude-fake-1"],
            },
            "mock": {"builtin": "mock"},
        },
        "routes": [
            {"match": {"model": "mock-*"}, "upstream": "mock"},
            {"match": {"model": "gpt-*"}, "upstream": fake_name},
            {"match": {"model": "text-embedding-*"}, "upstream": fake_name},
            {"match": {"model": "claude-*"}, "upstream": "claude"},
        ],
        # Default deny: the pod's own identity (role "agent") may call every model.
        "roles": {"agent": [{"actions": ["*"]}]},
    }


def write_bundle(directory: Path, bundle: Mapping[str, Any]) -> Path:
    """Write ``bundle.yaml`` into ``directory`` (created if needed); returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bundle.yaml").write_text(yaml.safe_dump(dict(bundle), sort_keys=False))
    return directory


# ---------------------------------------------------------------------- the process


@dataclass
class Sidecar:
    """A running ``sidecar run`` subprocess and its addresses."""

    proc: subprocess.Popen[bytes]
    http_port: int
    admin_port: int
    stderr_path: Path
    stdout_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Proxy base URL without ``/v1`` (what the Anthropic SDK wants)."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def openai_base(self) -> str:
        """Proxy base URL with ``/v1`` (what the OpenAI SDK wants)."""
        return f"{self.url}/v1"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def openai(self, **kwargs: Any) -> openai.AsyncOpenAI:
        """An OpenAI SDK client aimed at the sidecar, holding the agent's (fake) key."""
        kwargs.setdefault("api_key", AGENT_KEY)
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 15.0)
        return openai.AsyncOpenAI(base_url=self.openai_base, **kwargs)

    def anthropic(self, **kwargs: Any) -> anthropic.AsyncAnthropic:
        """An Anthropic SDK client aimed at the sidecar; also sends an agent x-api-key."""
        kwargs.setdefault("api_key", AGENT_KEY)
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 15.0)
        kwargs.setdefault("default_headers", {"x-api-key": AGENT_KEY})
        return anthropic.AsyncAnthropic(base_url=self.url, **kwargs)

    def sighup(self) -> None:
        self.proc.send_signal(signal.SIGHUP)

    async def admin_get(self, path: str) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.admin}{path}", timeout=aiohttp.ClientTimeout(total=5)) as resp,
        ):
            return resp.status, await resp.text()

    async def admin_json(self, path: str) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.admin}{path}", timeout=aiohttp.ClientTimeout(total=5)) as resp,
        ):
            assert resp.status == 200, f"GET {path} -> {resp.status}: {await resp.text()}"
            return await resp.json(content_type=None)

    async def proxy_accepts(self) -> bool:
        """Whether the proxy port accepts a TCP connection right now."""
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", self.http_port)
        except OSError:
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def wait_ready(self, within: float = READY_TIMEOUT) -> None:
        """Poll ``/readyz`` until 200 *and* the proxy port accepts connections.

        Checking the proxy port too keeps unrelated tests from flaking if /readyz
        turns 200 a moment before the proxy listener is bound;
        ``test_admin.test_ready_means_the_proxy_accepts`` tests that promise itself.
        Fails early (with stderr) if the process died.
        """
        deadline = time.monotonic() + within
        last = "no answer"
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"sidecar exited with {self.proc.returncode} before ready; "
                        f"args={self.args}\nstderr:\n{self.stderr()[-4000:]}"
                    )
                try:
                    async with session.get(
                        f"{self.admin}/readyz", timeout=aiohttp.ClientTimeout(total=1)
                    ) as resp:
                        if resp.status == 200 and await self.proxy_accepts():
                            return
                        last = f"{resp.status} {await resp.text()}"
                except (TimeoutError, aiohttp.ClientError) as exc:
                    last = repr(exc)
                await asyncio.sleep(0.05)
        raise AssertionError(
            f"sidecar not ready within {within}s (last /readyz: {last}); args={self.args}\n"
            f"stderr:\n{self.stderr()[-4000:]}"
        )

    async def terminate(self) -> None:
        """SIGTERM, wait up to 5 s, then SIGKILL.  Never leaves a process behind."""
        if self.proc.poll() is None:
            self.proc.terminate()
            for _ in range(250):  # up to 5 s
                if self.proc.poll() is not None:
                    break
                await asyncio.sleep(0.02)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=5)


def spawn_sidecar(
    tmp_path: Path,
    bundle: Path | None,
    *,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    use_flags: bool = True,
) -> Sidecar:
    """Start ``python -m sidecar run`` on fresh ports (not waiting for readiness)."""
    http_port, admin_port = free_port(), free_port()
    while admin_port == http_port:
        admin_port = free_port()
    args = [sys.executable, "-m", "sidecar", "run"]
    extra_env = dict(env or {})
    if use_flags:
        if bundle is not None:
            args += ["--bundle", str(bundle)]
        args += ["--http", f"127.0.0.1:{http_port}", "--admin", f"127.0.0.1:{admin_port}"]
    else:
        if bundle is not None:
            extra_env["SIDECAR_BUNDLE"] = str(bundle)
        extra_env["SIDECAR_HTTP"] = f"127.0.0.1:{http_port}"
        extra_env["SIDECAR_ADMIN"] = f"127.0.0.1:{admin_port}"
    args += list(extra_args)
    n = len(list(tmp_path.glob("sidecar-*.stderr")))
    stderr_path = tmp_path / f"sidecar-{n}.stderr"
    stdout_path = tmp_path / f"sidecar-{n}.stdout"
    with stderr_path.open("wb") as err, stdout_path.open("wb") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=sidecar_env(extra_env),
            cwd=tmp_path,
        )
    return Sidecar(proc, http_port, admin_port, stderr_path, stdout_path, args)


class SidecarLauncher:
    """Callable fixture object: ``sc = await launch(bundle_dir, extra_args=[...])``."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[Sidecar] = []

    async def __call__(
        self,
        bundle: Path | None,
        *,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        use_flags: bool = True,
        wait: bool = True,
    ) -> Sidecar:
        sidecar = spawn_sidecar(
            self.tmp_path, bundle, extra_args=extra_args, env=env, use_flags=use_flags
        )
        self.started.append(sidecar)
        if wait:
            await sidecar.wait_ready()
        return sidecar

    async def close(self) -> None:
        for sidecar in self.started:
            await sidecar.terminate()


# ---------------------------------------------------------------------- metrics

_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)"
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metric_samples(text: str, prefix: str) -> list[tuple[str, dict[str, str], float]]:
    """Samples of the Prometheus text whose metric name starts with ``prefix``.

    ``*_created`` series (timestamps that prometheus_client adds) are skipped.
    """
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match or not match["name"].startswith(prefix):
            continue
        if match["name"].endswith("_created"):
            continue
        labels = dict(_LABEL.findall(match["labels"] or ""))
        samples.append((match["name"], labels, float(match["value"])))
    return samples


def metric_value(text: str, prefix: str, labels: Mapping[str, str] | None = None) -> float:
    """Sum of the samples named ``prefix*`` carrying all of ``labels`` (0 if none)."""
    want = dict(labels or {})
    return sum(
        value
        for _name, have, value in metric_samples(text, prefix)
        if all(have.get(k) == v for k, v in want.items())
    )
