"""Fixtures for the e2e suite (helpers live in ``harness.py``).

The fake upstreams run in the test's own event loop, so tests use the *async*
SDK clients and nothing blocks the loop; the sidecar is a subprocess.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pytest

from fakes.upstream import FakeUpstream

from .harness import Sidecar, SidecarLauncher, standard_bundle, write_bundle

# ---------------------------------------------------------------------- fixtures


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    """The OpenAI-style upstream; replies ``fake says: <text>``."""
    async with FakeUpstream(name="fake") as upstream:
        yield upstream


@pytest.fixture
async def fake2() -> AsyncIterator[FakeUpstream]:
    """A second OpenAI-style upstream (reload tests move traffic to it)."""
    async with FakeUpstream(name="fake2") as upstream:
        yield upstream


@pytest.fixture
async def fake_claude() -> AsyncIterator[FakeUpstream]:
    """The Anthropic-style upstream; replies ``claudefake says: <text>``."""
    async with FakeUpstream(name="claudefake") as upstream:
        yield upstream


@pytest.fixture
async def launch(tmp_path: Path) -> AsyncIterator[SidecarLauncher]:
    launcher = SidecarLauncher(tmp_path)
    try:
        yield launcher
    finally:
        await launcher.close()


@pytest.fixture
def bundle_dir(tmp_path: Path, fake: FakeUpstream, fake_claude: FakeUpstream) -> Path:
    """A directory holding the standard bundle (revision ``r1``)."""
    return write_bundle(tmp_path / "bundle", standard_bundle(fake.url, fake_claude.url))


@pytest.fixture
async def sidecar(launch: SidecarLauncher, bundle_dir: Path) -> Sidecar:
    """A ready sidecar serving the standard bundle."""
    return await launch(bundle_dir)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On failure, attach the tail of every sidecar's stderr to the report."""
    report = yield
    if report.when == "call" and report.failed:
        funcargs = getattr(item, "funcargs", {})
        launcher = funcargs.get("launch")
        if isinstance(launcher, SidecarLauncher):
            for i, sc in enumerate(launcher.started):
                status = sc.proc.poll()
                state = "running" if status is None else f"EXITED with {status}"
                report.sections.append(
                    (f"sidecar {i} ({state}) stderr (tail)", sc.stderr()[-3000:])
                )
                report.sections.append((f"sidecar {i} sockets", _sockets(sc)))
    return report


def _sockets(sc: Sidecar) -> str:
    """Who listens on / talks to the sidecar's ports (diagnoses 'connection refused')."""
    if shutil.which("ss") is None:
        return "ss not installed"
    out = subprocess.run(["ss", "-tanp"], capture_output=True, text=True, check=False).stdout
    ports = (f":{sc.http_port} ", f":{sc.admin_port} ")
    return "\n".join(line for line in out.splitlines() if any(p in line for p in ports))
