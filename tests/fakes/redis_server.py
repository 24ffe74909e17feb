"""A real `redis-server` on a free loopback port, that a test can stop and start again.

CI installs redis-server (see the Makefile); on a machine without it the tests
that need it are skipped, except under CI, where a missing server fails them.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        message = "redis-server is not installed (make test installs it on Debian/Ubuntu)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _free_cluster_port() -> int:
    """A port free together with port + 10000, which a cluster node uses for its bus."""
    for _ in range(200):
        port = random.randint(20000, 30000)
        try:
            for p in (port, port + 10000):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise AssertionError("no free port pair for a cluster node")


class RedisServer:
    def __init__(self, workdir: Path, *, cluster_node: bool = False) -> None:
        self.binary = redis_binary()
        self.port = _free_cluster_port() if cluster_node else _free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra: list[str] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; the wait is async
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        for _ in range(500):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.01)
                continue
            writer.close()
            return
        raise AssertionError(f"redis-server did not listen on {self.port}")

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.kill()
        await asyncio.to_thread(proc.wait, 5)

    def pause(self) -> None:
        """SIGSTOP: the server holds connections open and answers nothing (a hung Redis)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


class RedisClusterNodes:
    """Three masters forming a real Redis Cluster (no replicas), on free ports."""

    def __init__(self, workdir: Path) -> None:
        self.nodes = [RedisServer(workdir / f"node{i}", cluster_node=True) for i in range(3)]
        cli = shutil.which("redis-cli")
        if cli is None:
            pytest.skip("redis-cli is not installed")
        self.cli = cli

    @property
    def url(self) -> str:
        return self.nodes[0].url

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()  # never leave a node behind
            raise

    async def _start(self) -> None:
        for node in self.nodes:
            node.workdir.mkdir(parents=True, exist_ok=True)
            node.extra = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            await node.start()
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        create = await asyncio.create_subprocess_exec(
            self.cli,
            "--cluster",
            "create",
            *addresses,
            "--cluster-replicas",
            "0",
            "--cluster-yes",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await asyncio.wait_for(create.wait(), 30)
        for node in self.nodes:  # every node must agree before the test starts
            for _ in range(300):
                info = await asyncio.create_subprocess_exec(
                    self.cli,
                    "-p",
                    str(node.port),
                    "cluster",
                    "info",
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.DEVNULL,
                )
                out, _ = await info.communicate()
                if b"cluster_state:ok" in out:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the Redis Cluster did not come up")

    async def stop(self) -> None:
        for node in self.nodes:
            await node.stop()
