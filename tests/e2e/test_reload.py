"""Hot reload: file edits, Kubernetes ConfigMap symlink swaps, SIGHUP, bad bundles.

SPEC: the sidecar watches the bundle's directory; a change takes effect within
2 s; a request keeps the bundle it started with; an invalid bundle is rejected
(old one keeps serving, /bundle shows last_error, the reload-error metric
increments); a .tar.gz bundle works.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import tarfile
import time
from pathlib import Path
from typing import Any

import openai
import yaml

from fakes.upstream import FakeUpstream

from .harness import (
    OPENAI_KEY,
    RELOAD_WITHIN,
    Sidecar,
    SidecarLauncher,
    metric_value,
    run_cli,
    standard_bundle,
    write_bundle,
)

# The SPEC promises 2 s from the change to the first call that sees it.
DEADLINE = RELOAD_WITHIN


async def chat(sidecar: Sidecar, text: str) -> tuple[str, str, str]:
    """One chat call: (reply text, bundle revision header, upstream header)."""
    raw = await sidecar.openai().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": text}]
    )
    content = raw.parse().choices[0].message.content or ""
    return (
        content,
        raw.headers.get("x-sidecar-bundle-revision", ""),
        raw.headers.get("x-sidecar-upstream", ""),
    )


async def wait_for_revision(sidecar: Sidecar, revision: str, since: float) -> tuple[str, str]:
    """Poll with chat calls until responses carry ``revision``; returns (text, upstream)."""
    seen = ""
    while True:
        text, seen, upstream = await chat(sidecar, "probe")
        if seen == revision:
            return text, upstream
        if time.monotonic() - since > DEADLINE:
            raise AssertionError(
                f"revision still {seen!r} {DEADLINE:.1f}s after the change (want {revision!r})"
            )
        await asyncio.sleep(0.05)


def second_bundle(fake: FakeUpstream, fake2: FakeUpstream, claude: FakeUpstream) -> dict[str, Any]:
    """Same shape as the standard bundle, but gpt-* goes to ``fake2`` (revision r2)."""
    bundle = standard_bundle(fake.url, claude.url, revision="r2")
    bundle["upstreams"]["fake2"] = {
        "provider": "openai",
        "base_url": fake2.url,
        "api_key": {"env": "FAKE_KEY"},
        "models": ["gpt-4o"],
    }
    for route in bundle["routes"]:
        if route["match"].get("model") == "gpt-*":
            route["upstream"] = "fake2"
    return bundle


async def test_edit_bundle_yaml(
    sidecar: Sidecar,
    bundle_dir: Path,
    fake: FakeUpstream,
    fake2: FakeUpstream,
    fake_claude: FakeUpstream,
) -> None:
    text, revision, upstream = await chat(sidecar, "before")
    assert (text, revision, upstream) == ("fake says: before", "r1", "fake")
    await asyncio.sleep(0.1)  # let a coarse-mtime watcher see a distinct change

    since = time.monotonic()
    write_bundle(bundle_dir, second_bundle(fake, fake2, fake_claude))
    await wait_for_revision(sidecar, "r2", since)

    text, revision, upstream = await chat(sidecar, "after")
    assert text == "fake2 says: after"
    assert (revision, upstream) == ("r2", "fake2")
    assert fake2.last_request.header_values("Authorization") == [f"Bearer {OPENAI_KEY}"]
    info = await sidecar.admin_json("/bundle")
    assert info["revision"] == "r2"
    metrics = (await sidecar.admin_get("/metrics"))[1]
    assert metric_value(metrics, "sidecar_bundle_reloads", {"result": "success"}) >= 1


async def test_atomic_rename_edit(
    sidecar: Sidecar,
    bundle_dir: Path,
    fake: FakeUpstream,
    fake2: FakeUpstream,
    fake_claude: FakeUpstream,
) -> None:
    """Editors (vim, IDEs) save by writing a temp file and renaming it over the original."""
    assert await chat(sidecar, "pre") == ("fake says: pre", "r1", "fake")
    await asyncio.sleep(0.1)
    tmp = bundle_dir / ".bundle.yaml.swp"
    tmp.write_text(yaml.safe_dump(second_bundle(fake, fake2, fake_claude), sort_keys=False))
    since = time.monotonic()
    os.replace(tmp, bundle_dir / "bundle.yaml")
    await wait_for_revision(sidecar, "r2", since)

    # ... and the watcher still sees the next edit after the inode changed.
    await asyncio.sleep(0.1)
    since = time.monotonic()
    write_bundle(bundle_dir, standard_bundle(fake.url, fake_claude.url, revision="r3"))
    await wait_for_revision(sidecar, "r3", since)


def configmap_layout(root: Path, bundle: dict[str, Any], stamp: str) -> None:
    """What kubelet builds: ``..<stamp>/bundle.yaml``, ``..data -> ..<stamp>``,
    ``bundle.yaml -> ..data/bundle.yaml``."""
    root.mkdir(parents=True, exist_ok=True)
    version_dir = root / f"..{stamp}"
    version_dir.mkdir()
    (version_dir / "bundle.yaml").write_text(yaml.safe_dump(bundle, sort_keys=False))
    (root / "..data").symlink_to(version_dir.name)
    (root / "bundle.yaml").symlink_to("..data/bundle.yaml")


def configmap_swap(root: Path, bundle: dict[str, Any], new_stamp: str) -> None:
    """What kubelet does on update: new dir, ``..data_tmp`` symlink, atomic rename."""
    old_target = os.readlink(root / "..data")
    version_dir = root / f"..{new_stamp}"
    version_dir.mkdir()
    (version_dir / "bundle.yaml").write_text(yaml.safe_dump(bundle, sort_keys=False))
    (root / "..data_tmp").symlink_to(version_dir.name)
    os.replace(root / "..data_tmp", root / "..data")
    old = root / old_target
    for child in old.iterdir():
        child.unlink()
    old.rmdir()


async def test_configmap_symlink_swap(
    tmp_path: Path,
    launch: SidecarLauncher,
    fake: FakeUpstream,
    fake2: FakeUpstream,
    fake_claude: FakeUpstream,
) -> None:
    root = tmp_path / "configmap"
    configmap_layout(root, standard_bundle(fake.url, fake_claude.url), "2026_11_22_10_00_00.1")
    sc = await launch(root)
    assert await chat(sc, "cm before") == ("fake says: cm before", "r1", "fake")
    await asyncio.sleep(0.1)

    since = time.monotonic()
    configmap_swap(root, second_bundle(fake, fake2, fake_claude), "2026_11_22_10_05_00.2")
    await wait_for_revision(sc, "r2", since)
    assert await chat(sc, "cm after") == ("fake2 says: cm after", "r2", "fake2")

    # A second swap works too (the watcher survived the first one).
    third = standard_bundle(fake.url, fake_claude.url, revision="r3")
    since = time.monotonic()
    configmap_swap(root, third, "2026_11_22_10_10_00.3")
    await wait_for_revision(sc, "r3", since)
    assert await chat(sc, "cm third") == ("fake says: cm third", "r3", "fake")


async def test_stream_in_flight_survives_reload(
    sidecar: Sidecar,
    bundle_dir: Path,
    fake: FakeUpstream,
    fake2: FakeUpstream,
    fake_claude: FakeUpstream,
) -> None:
    fake.gate = asyncio.Event()
    raw = await sidecar.openai().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "long story"}], stream=True
    )
    assert raw.headers.get("x-sidecar-bundle-revision") == "r1"
    stream = raw.parse()
    it = stream.__aiter__()
    text = ""
    async with asyncio.timeout(5):
        while not text:
            chunk = await it.__anext__()
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""

    since = time.monotonic()
    write_bundle(bundle_dir, second_bundle(fake, fake2, fake_claude))
    await wait_for_revision(sidecar, "r2", since)  # the new bundle is live ...
    assert not fake.gate.is_set()

    fake.gate.set()  # ... and the old stream still completes from the old upstream
    async with asyncio.timeout(5):
        async for chunk in it:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
    assert text == "fake says: long story"
    assert fake.streams_completed == 1
    assert await chat(sidecar, "new") == ("fake2 says: new", "r2", "fake2")


async def test_invalid_bundle_rejected_then_fixed(
    sidecar: Sidecar,
    bundle_dir: Path,
    fake: FakeUpstream,
    fake2: FakeUpstream,
    fake_claude: FakeUpstream,
) -> None:
    assert await chat(sidecar, "good") == ("fake says: good", "r1", "fake")
    info = await sidecar.admin_json("/bundle")
    assert info["last_error"] is None
    metrics = (await sidecar.admin_get("/metrics"))[1]
    errors_before = metric_value(metrics, "sidecar_bundle_reloads", {"result": "error"})
    await asyncio.sleep(0.1)

    bad = standard_bundle(fake.url, fake_claude.url, revision="bad")
    bad["routes"].append({"match": {"model": "x-*"}, "upstream": "no-such-upstream"})
    since = time.monotonic()
    write_bundle(bundle_dir, bad)

    # /bundle reports the rejection within the reload window ...
    while True:
        info = await sidecar.admin_json("/bundle")
        if info.get("last_error"):
            break
        assert time.monotonic() - since < DEADLINE, f"/bundle never showed last_error: {info}"
        await asyncio.sleep(0.05)
    assert info["revision"] == "r1"
    assert "no-such-upstream" in json.dumps(info["last_error"])
    metrics = (await sidecar.admin_get("/metrics"))[1]
    assert metric_value(metrics, "sidecar_bundle_reloads", {"result": "error"}) > errors_before

    # ... the old bundle keeps serving, and the sidecar stays ready.
    assert await chat(sidecar, "still good") == ("fake says: still good", "r1", "fake")
    assert (await sidecar.admin_get("/readyz"))[0] == 200

    # Fixing the file activates it.
    since = time.monotonic()
    write_bundle(bundle_dir, second_bundle(fake, fake2, fake_claude))
    await wait_for_revision(sidecar, "r2", since)
    assert await chat(sidecar, "fixed") == ("fake2 says: fixed", "r2", "fake2")
    assert (await sidecar.admin_json("/bundle"))["revision"] == "r2"


async def test_unparseable_yaml_rejected(
    sidecar: Sidecar, bundle_dir: Path, fake: FakeUpstream
) -> None:
    await asyncio.sleep(0.1)
    since = time.monotonic()
    (bundle_dir / "bundle.yaml").write_text("apiVersion: sidecar/v1\nroutes: [unclosed\n")
    while not (await sidecar.admin_json("/bundle")).get("last_error"):
        assert time.monotonic() - since < DEADLINE, "broken YAML never reported in /bundle"
        await asyncio.sleep(0.05)
    assert await chat(sidecar, "yaml") == ("fake says: yaml", "r1", "fake")


async def test_sighup_reloads(
    tmp_path: Path, launch: SidecarLauncher, fake: FakeUpstream, fake_claude: FakeUpstream
) -> None:
    """A key file outside the watched directory is rotated; SIGHUP makes a reload happen."""
    key_file = tmp_path / "keys" / "key"
    key_file.parent.mkdir()
    key_file.write_text("first-key")
    bundle = standard_bundle(fake.url, fake_claude.url)
    bundle["upstreams"]["fake"]["api_key"] = {"file": str(key_file)}
    sc = await launch(write_bundle(tmp_path / "b", bundle))
    await chat(sc, "k1")
    assert fake.last_request.header_values("Authorization") == ["Bearer first-key"]
    metrics = (await sc.admin_get("/metrics"))[1]
    before = metric_value(metrics, "sidecar_bundle_reloads", {"result": "success"})

    key_file.write_text("second-key")
    since = time.monotonic()
    sc.sighup()
    while True:
        metrics = (await sc.admin_get("/metrics"))[1]
        if metric_value(metrics, "sidecar_bundle_reloads", {"result": "success"}) > before:
            break
        assert sc.proc.poll() is None, "SIGHUP killed the sidecar"
        assert time.monotonic() - since < DEADLINE, "SIGHUP did not trigger a reload"
        await asyncio.sleep(0.05)
    await chat(sc, "k2")
    assert fake.last_request.header_values("Authorization") == ["Bearer second-key"]


def make_tarball(path: Path, bundle: dict[str, Any]) -> Path:
    data = yaml.safe_dump(bundle, sort_keys=False).encode()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("bundle.yaml")
        info.size = len(data)
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return path


async def test_tar_gz_bundle(
    tmp_path: Path, launch: SidecarLauncher, fake: FakeUpstream, fake_claude: FakeUpstream
) -> None:
    tarball = make_tarball(
        tmp_path / "bundle.tar.gz", standard_bundle(fake.url, fake_claude.url, revision="tar-1")
    )
    check = run_cli(["check", str(tarball)])
    assert check.returncode == 0, check.stderr
    sc = await launch(tarball)
    assert await chat(sc, "from tar") == ("fake says: from tar", "tar-1", "fake")
    info = await sc.admin_json("/bundle")
    assert info["revision"] == "tar-1"


async def test_json_bundle(
    tmp_path: Path, launch: SidecarLauncher, fake: FakeUpstream, fake_claude: FakeUpstream
) -> None:
    directory = tmp_path / "jsonbundle"
    directory.mkdir()
    bundle = standard_bundle(fake.url, fake_claude.url, revision="json-1")
    (directory / "bundle.json").write_text(json.dumps(bundle))
    assert run_cli(["check", str(directory)]).returncode == 0
    sc = await launch(directory)
    assert await chat(sc, "from json") == ("fake says: from json", "json-1", "fake")


async def test_reload_does_not_drop_concurrent_calls(
    sidecar: Sidecar,
    bundle_dir: Path,
    fake: FakeUpstream,
    fake2: FakeUpstream,
    fake_claude: FakeUpstream,
) -> None:
    """Calls made while a reload happens all succeed, each on one consistent bundle."""
    client = sidecar.openai()
    stop = asyncio.Event()
    results: list[tuple[str, str]] = []
    failures: list[BaseException] = []

    async def hammer() -> None:
        while not stop.is_set():
            try:
                raw = await client.chat.completions.with_raw_response.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "h"}]
                )
            except openai.APIError as exc:
                failures.append(exc)
                continue
            content = raw.parse().choices[0].message.content or ""
            results.append((raw.headers.get("x-sidecar-bundle-revision", ""), content))

    workers = [asyncio.ensure_future(hammer()) for _ in range(4)]
    await asyncio.sleep(0.2)
    since = time.monotonic()
    write_bundle(bundle_dir, second_bundle(fake, fake2, fake_claude))
    try:
        while not any(rev == "r2" for rev, _ in results):
            assert time.monotonic() - since < DEADLINE, "reload not seen under load"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.gather(*workers)
    assert failures == []
    for revision, content in results:
        expected = {"r1": "fake says: h", "r2": "fake2 says: h"}[revision]
        assert content == expected, (revision, content)


async def test_reload_repoints_an_upstream_of_the_same_name(
    sidecar: Sidecar,
    bundle_dir: Path,
    fake: FakeUpstream,
    fake2: FakeUpstream,
    fake_claude: FakeUpstream,
) -> None:
    """Same upstream name, new base_url / headers / models: nothing of the old one lingers
    (e.g. a connection pool or header set cached by upstream name)."""
    assert await chat(sidecar, "old") == ("fake says: old", "r1", "fake")
    await asyncio.sleep(0.1)
    bundle = standard_bundle(fake2.url, fake_claude.url, revision="r2")
    bundle["upstreams"]["fake"]["headers"] = {"X-Static": "v2"}
    bundle["upstreams"]["fake"]["models"] = ["gpt-4o", "gpt-5-new"]
    since = time.monotonic()
    write_bundle(bundle_dir, bundle)
    await wait_for_revision(sidecar, "r2", since)

    fake.reset()
    assert await chat(sidecar, "new") == ("fake2 says: new", "r2", "fake")
    assert fake.requests == []
    assert fake2.last_request.header_values("X-Static") == ["v2"]
    models = await sidecar.openai().models.list()
    ids = {m.id for m in models.data}
    assert "gpt-5-new" in ids and "gpt-4o-mini" not in ids, ids


async def test_deleted_bundle_file_keeps_the_old_bundle(
    sidecar: Sidecar,
    bundle_dir: Path,
    fake: FakeUpstream,
    fake2: FakeUpstream,
    fake_claude: FakeUpstream,
) -> None:
    """A bundle directory briefly without bundle.yaml (a bad deploy) is not a new bundle."""
    await asyncio.sleep(0.1)
    since = time.monotonic()
    (bundle_dir / "bundle.yaml").unlink()
    while not (await sidecar.admin_json("/bundle")).get("last_error"):
        assert time.monotonic() - since < DEADLINE, "a missing bundle.yaml was never reported"
        await asyncio.sleep(0.05)
    assert await chat(sidecar, "orphan") == ("fake says: orphan", "r1", "fake")
    assert (await sidecar.admin_get("/readyz"))[0] == 200

    since = time.monotonic()
    write_bundle(bundle_dir, second_bundle(fake, fake2, fake_claude))
    await wait_for_revision(sidecar, "r2", since)
