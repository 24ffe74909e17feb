"""In-process sidecars on loopback ports, driven by the real SDKs against a real fake upstream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fakes.upstream import FakeUpstream
from sidecar.server.app import Sidecar
from sidecar.settings import Settings
from sidecar.telemetry.setup import Telemetry, setup_telemetry


@dataclass
class Running:
    sidecar: Sidecar
    bundle_dir: Path
    spans: InMemorySpanExporter
    telemetry: Telemetry

    @property
    def base(self) -> str:
        assert self.sidecar.http_address is not None
        host, port = self.sidecar.http_address
        return f"http://{host}:{port}"

    @property
    def admin(self) -> str:
        assert self.sidecar.admin_address is not None
        host, port = self.sidecar.admin_address
        return f"http://{host}:{port}"

    def write_bundle(self, doc: dict[str, Any]) -> None:
        (self.bundle_dir / "bundle.yaml").write_text(yaml.safe_dump(doc))

    def finished(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if name is None or s.name == name]

    async def wait_for_span(self, name: str, within: float = 3.0) -> ReadableSpan:
        for _ in range(int(within / 0.01)):
            found = self.finished(name)
            if found:
                return found[-1]
            await asyncio.sleep(0.01)
        raise AssertionError(f"no finished span {name!r}; have {[s.name for s in self.finished()]}")


def openai_bundle(fake: FakeUpstream, revision: str = "r1", **upstream: Any) -> dict[str, Any]:
    return {
        "apiVersion": "sidecar/v1",
        "revision": revision,
        "upstreams": {
            "fake": {"base_url": fake.url, "api_key": {"env": "FAKE_UPSTREAM_KEY"}, **upstream},
            "claude": {
                "provider": "anthropic",
                "base_url": fake.url,
                "api_key": {"env": "FAKE_UPSTREAM_KEY"},
            },
            "mock": {"builtin": "mock", "models": ["mock-echo"]},
        },
        "routes": [
            {"match": {"model": "mock-*"}, "upstream": "mock"},
            {"name": "claude", "match": {"model": "claude-*"}, "upstream": "claude"},
            {"name": "gpt", "match": {"model": "gpt-*"}, "upstream": "fake"},
        ],
        # Default deny: the pod's own identity (role "agent") and keyed "analyst"s may call all.
        "roles": {
            "agent": [{"actions": ["*"]}],
            "analyst": [{"actions": ["*"]}],
        },
    }


MakeSidecar = Callable[..., Awaitable[Running]]


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    upstream = FakeUpstream()
    await upstream.start()
    yield upstream
    await upstream.stop()


@pytest.fixture
async def make_sidecar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[MakeSidecar]:
    monkeypatch.setenv("FAKE_UPSTREAM_KEY", "sk-injected-upstream-key")
    # The sidecar honours the proxy settings of its environment; the shell's must not
    # send these loopback tests elsewhere. A test that wants a proxy sets its own.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    started: list[Running] = []

    async def make(
        doc: dict[str, Any] | None,
        *,
        max_body_bytes: int = 1 << 20,
        watch: bool = False,
        record_spans: bool = True,
        **settings: Any,
    ) -> Running:
        bundle_dir = tmp_path / f"bundle{len(started)}"
        bundle_dir.mkdir()
        if doc is not None:
            (bundle_dir / "bundle.yaml").write_text(yaml.safe_dump(doc))
        spans = InMemorySpanExporter()
        telemetry = setup_telemetry(
            "none", span_processors=[SimpleSpanProcessor(spans)] if record_spans else []
        )
        config = Settings.resolve(
            bundle=str(bundle_dir),
            http="127.0.0.1:0",
            admin="127.0.0.1:0",
            max_body_bytes=max_body_bytes,
            **settings,
        )
        sidecar = Sidecar(config, telemetry)
        await sidecar.start(watch=watch)
        running = Running(sidecar, bundle_dir, spans, telemetry)
        started.append(running)
        return running

    yield make
    for running in started:
        await running.sidecar.stop()
        running.telemetry.shutdown()
