"""The admin listener: /healthz, /readyz, /bundle, /metrics.

SPEC: /healthz 200; /readyz 200 once a bundle is active; /bundle JSON with at
least revision, source, loaded_at, last_error; /metrics in Prometheus text with
``gen_ai_client_operation_duration`` histogram series after a call and a
``sidecar_bundle_reloads*`` counter labelled ``result``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from fakes.upstream import FakeUpstream

from .harness import (
    Sidecar,
    SidecarLauncher,
    free_port,
    metric_samples,
    metric_value,
    spawn_sidecar,
)


async def test_health_ready_and_bundle_info(sidecar: Sidecar, bundle_dir: Path) -> None:
    assert (await sidecar.admin_get("/healthz"))[0] == 200
    assert (await sidecar.admin_get("/readyz"))[0] == 200
    info = await sidecar.admin_json("/bundle")
    assert info["revision"] == "r1"
    assert bundle_dir.name in str(info["source"]), info
    assert info["loaded_at"], info
    assert "last_error" in info and info["last_error"] is None, info


async def test_metrics_after_calls(
    sidecar: Sidecar, fake: FakeUpstream, fake_claude: FakeUpstream
) -> None:
    client = sidecar.openai()
    for text in ("m1", "m2"):
        await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": text}]
        )
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "m3"}], stream=True
    )
    async for _ in stream:
        pass
    await sidecar.anthropic().messages.create(
        model="claude-fake-1", max_tokens=8, messages=[{"role": "user", "content": "m4"}]
    )

    status, text = await sidecar.admin_get("/metrics")
    assert status == 200
    duration = metric_samples(text, "gen_ai_client_operation_duration")
    assert duration, "no gen_ai_client_operation_duration series in /metrics"
    names = {name for name, _, _ in duration}
    assert any(n.endswith("_bucket") for n in names), names
    counts = [v for n, _, v in duration if n.endswith("_count")]
    assert counts and sum(counts) >= 4, f"histogram counted {sum(counts)} ops, want >= 4"
    assert any("le" in labels for _, labels, _ in duration)

    reloads = metric_samples(text, "sidecar_bundle_reloads")
    assert reloads, "no sidecar_bundle_reloads* counter in /metrics"
    assert all("result" in labels for _, labels, _ in reloads), reloads
    assert metric_value(text, "sidecar_bundle_reloads", {"result": "success"}) >= 1
    assert metric_value(text, "sidecar_bundle_reloads", {"result": "error"}) == 0


async def accepts_at_first_ready(sc: Sidecar) -> bool:
    """Wait for the first /readyz 200 (several polls always in flight), then connect."""
    ready = asyncio.Event()

    async def poll(session: aiohttp.ClientSession) -> None:
        while not ready.is_set():
            assert sc.proc.poll() is None, sc.stderr()
            try:
                async with session.get(f"{sc.admin}/readyz") as resp:
                    if resp.status == 200:
                        ready.set()
                        return
            except aiohttp.ClientError:
                await asyncio.sleep(0.002)

    async with aiohttp.ClientSession() as session:
        pollers = [asyncio.ensure_future(poll(session)) for _ in range(4)]
        try:
            async with asyncio.timeout(10):
                await ready.wait()
            return await sc.proxy_accepts()
        finally:
            for task in pollers:
                task.cancel()
            await asyncio.gather(*pollers, return_exceptions=True)


async def test_ready_means_the_proxy_accepts(tmp_path: Path, bundle_dir: Path) -> None:
    """When /readyz first says 200, the proxy port must already accept connections.

    Kubernetes sends traffic as soon as the readiness probe passes.  A few starts make
    a short window between "ready" and "listening" show up reliably.
    """
    for attempt in range(4):
        sc = spawn_sidecar(tmp_path, bundle_dir)
        try:
            accepted = await accepts_at_first_ready(sc)
        finally:
            await sc.terminate()
        assert accepted, (
            f"start {attempt}: /readyz was 200 but the proxy port "
            f"{sc.http_port} refused the connection"
        )


async def test_probes_listener_serves_probes_only(
    launch: SidecarLauncher, bundle_dir: Path
) -> None:
    """`--probes` is what may face the pod network: health and readiness, nothing else."""
    port = free_port()
    sc = await launch(bundle_dir, extra_args=["--probes", f"127.0.0.1:{port}"])
    probes = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for path, want in (
            ("/healthz", 200),
            ("/readyz", 200),
            ("/bundle", 404),
            ("/metrics", 404),
        ):
            async with session.get(probes + path) as resp:
                assert resp.status == want, (path, resp.status, await resp.text())
    # The admin listener still serves everything, on its own (loopback) address.
    assert (await sc.admin_get("/bundle"))[0] == 200
    assert (await sc.admin_get("/metrics"))[0] == 200


async def test_admin_methods_and_unknown_paths(sidecar: Sidecar) -> None:
    """The admin routes answer GET and HEAD; other methods get 405 with Allow; others 404."""
    async with aiohttp.ClientSession() as session:
        async with session.head(f"{sidecar.admin}/readyz") as resp:
            assert resp.status == 200
            assert await resp.read() == b""
        async with session.get(f"{sidecar.admin}/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
        async with session.post(f"{sidecar.admin}/healthz", data=b"{}") as resp:
            assert resp.status == 405
            assert {m.strip() for m in resp.headers["allow"].split(",")} == {"GET", "HEAD"}
        async with session.get(f"{sidecar.admin}/nothing-here") as resp:
            assert resp.status == 404
        async with session.get(f"{sidecar.admin}/healthz") as resp:
            assert resp.status == 200
            assert resp.headers["content-type"] == "application/json"
            assert await resp.json() == {"status": "ok"}
