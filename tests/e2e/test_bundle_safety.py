"""Hostile bundles: through `sidecar check` and a running sidecar's hot reload.

SPEC: no bundle takes the process down. Nesting depth, file count and total
size are bounded before any parser recurses; every load failure is a reported
rejection (`sidecar check` exits 1 with a message, a running sidecar keeps the
last good bundle, `/bundle` shows `last_error`, the reload-error counter
moves); a reverted bad edit clears `last_error`. Duplicate YAML keys and
duplicate archive members are errors. `/bundle` never shows credentials, key
digests, where keys are read from, or passwords in URLs.
"""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from fakes.upstream import FakeUpstream

from .harness import (
    RELOAD_WITHIN,
    Sidecar,
    SidecarLauncher,
    metric_value,
    run_cli,
    standard_bundle,
    write_bundle,
)

DEEP = 30_000  # about 60 KB of YAML; enough to overflow the C stack of a recursive parser


def deep_yaml(revision: str = "deep") -> str:
    """A bundle whose `tests` value is a list nested DEEP levels (flow style)."""
    return f"apiVersion: sidecar/v1\nrevision: {revision}\ntests: {'[' * DEEP}{']' * DEEP}\n"


def deep_json(revision: str = "deep") -> str:
    nested = "[" * DEEP + "]" * DEEP
    return f'{{"apiVersion": "sidecar/v1", "revision": "{revision}", "tests": {nested}}}'


def assert_clean_failure(result: Any, *needles: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    for needle in needles:
        assert needle in result.stderr, result.stderr[-2000:]


@pytest.mark.parametrize(
    ("name", "text"), [("bundle.yaml", deep_yaml()), ("bundle.json", deep_json())]
)
def test_check_deeply_nested_bundle(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    assert len(text) > 50_000
    assert_clean_failure(run_cli(["check", str(tmp_path)]), name, "levels deep")


def test_check_yaml_alias_expansion_bomb(tmp_path: Path) -> None:
    """Nine levels of ten aliases each: a 1 KB file naming a billion values."""
    lines = ["apiVersion: sidecar/v1", "revision: bomb", "x0: &x0 [a, a, a, a, a, a, a, a, a, a]"]
    for i in range(1, 10):
        refs = ", ".join([f"*x{i - 1}"] * 10)
        lines.append(f"x{i}: &x{i} [{refs}]")
    (tmp_path / "bundle.yaml").write_text("\n".join(lines) + "\n")
    assert_clean_failure(run_cli(["check", str(tmp_path)]), "aliases are expanded")


def test_check_duplicate_yaml_key(tmp_path: Path) -> None:
    (tmp_path / "bundle.yaml").write_text(
        "apiVersion: sidecar/v1\nrevision: r1\nroles:\n  agent: [{actions: ['*']}]\nrevision: r2\n"
    )
    assert_clean_failure(run_cli(["check", str(tmp_path)]), "duplicate key 'revision'", "line 5")


def test_check_duplicate_json_member(tmp_path: Path) -> None:
    (tmp_path / "bundle.json").write_text(
        '{"apiVersion": "sidecar/v1", "revision": "r1", "revision": "r2"}'
    )
    assert_clean_failure(run_cli(["check", str(tmp_path)]), 'duplicate key "revision"')


def test_yaml_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    """`<<: *base` then a key of the mapping's own is what a merge is for: not a duplicate."""
    (tmp_path / "bundle.yaml").write_text(
        "apiVersion: sidecar/v1\nrevision: r1\n"
        "upstreams:\n"
        "  a: &base {builtin: mock, models: [mock-a]}\n"
        "  b: {<<: *base, models: [mock-b]}\n"
        "routes: [{match: {model: 'mock-*'}, upstream: a}]\n"
    )
    result = run_cli(["check", str(tmp_path)])
    assert result.returncode == 0, result.stderr


MOCK_ONLY = {
    "apiVersion": "sidecar/v1",
    "revision": "c1",
    "upstreams": {"mock": {"builtin": "mock"}},
    "routes": [{"upstream": "mock"}],
}


def deep_policy(shape: str) -> str:
    body = {
        "parens": "(" * DEEP + "true" + ")" * DEEP,
        "chain": " && ".join(["true"] * DEEP),
    }[shape]
    return f"permit (principal, action, resource) when {{ {body} }};\n"


@pytest.mark.parametrize("shape", ["parens", "chain"])
def test_check_deeply_nested_cedar_policy(tmp_path: Path, shape: str) -> None:
    """The Cedar parser recurses natively: a thousand parentheses overflow its stack."""
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "deep.cedar").write_text(deep_policy(shape))
    write_bundle(tmp_path, {**MOCK_ONLY, "policies": ["policies/*.cedar"]})
    assert_clean_failure(run_cli(["check", str(tmp_path)]), "policies/deep.cedar", "levels deep")


def test_role_with_thousands_of_models(tmp_path: Path) -> None:
    """Roles compile into Cedar; a long model list must not become a parse too deep."""
    models = [f"model-{i}-*" for i in range(5000)] + ["mock-*"]
    roles = {"agent": [{"actions": ["llm.*"], "models": models}]}
    tests = [
        {
            "name": "last listed",
            "principal": "pod",
            "action": "llm.chat",
            "model": "mock-echo",
            "expect": "allow",
        },
        {
            "name": "not listed",
            "principal": "pod",
            "action": "llm.chat",
            "model": "other",
            "expect": "deny",
        },
    ]
    write_bundle(tmp_path, {**MOCK_ONLY, "roles": roles, "tests": tests})
    result = run_cli(["check", str(tmp_path)])
    assert result.returncode == 0, result.stderr[-2000:]
    result = run_cli(["test", str(tmp_path)])
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-2000:])


def test_check_deeply_nested_jwks_file(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "jwks.json").write_text('{"keys": ' + "[" * DEEP + "]" * DEEP + "}")
    identity = {
        "jwt": [
            {
                "issuer": "https://login.example.com/",
                "audiences": ["sidecar"],
                "jwks_file": "keys/jwks.json",
            }
        ]
    }
    write_bundle(tmp_path, {**MOCK_ONLY, "identity": identity})
    assert_clean_failure(run_cli(["check", str(tmp_path)]), "jwks_file", "levels deep")


def tar_bundle(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


GOOD_YAML = b"apiVersion: sidecar/v1\nrevision: r1\n"
EVIL_YAML = b"apiVersion: sidecar/v1\nrevision: evil\n"


@pytest.mark.parametrize("second", ["bundle.yaml", "./bundle.yaml", "./x/../bundle.yaml"])
def test_check_duplicate_archive_member(tmp_path: Path, second: str) -> None:
    """Which copy wins depends on the tool: the bundle reviewed may not be the one served."""
    archive = tar_bundle(tmp_path / "b.tar.gz", [("bundle.yaml", GOOD_YAML), (second, EVIL_YAML)])
    result = run_cli(["check", str(archive)])
    needle = "unsafe path" if ".." in second else "appears more than once"
    assert_clean_failure(result, needle)


def test_check_archive_over_the_file_limit(tmp_path: Path) -> None:
    members = [("bundle.yaml", GOOD_YAML)] + [(f"f{i}.txt", b"") for i in range(1001)]
    result = run_cli(["check", str(tar_bundle(tmp_path / "many.tar.gz", members))])
    assert_clean_failure(result, "more than 1000 files")
    assert "larger than" not in result.stderr


def test_check_directory_over_the_file_limit(tmp_path: Path) -> None:
    (tmp_path / "bundle.yaml").write_bytes(GOOD_YAML)
    for i in range(1001):
        (tmp_path / f"f{i}.txt").write_bytes(b"")
    assert_clean_failure(run_cli(["check", str(tmp_path)]), "more than 1000 files")


def test_bounds_are_set_from_the_environment(tmp_path: Path) -> None:
    """SIDECAR_BUNDLE_MAX_*: the same bounds for `check`, `test` and `run`."""
    write_bundle(tmp_path, MOCK_ONLY)
    for i in range(5):
        (tmp_path / f"f{i}.txt").write_bytes(b"")
    assert run_cli(["check", str(tmp_path)]).returncode == 0
    tight = run_cli(["check", str(tmp_path)], env={"SIDECAR_BUNDLE_MAX_FILES": "5"})
    assert_clean_failure(tight, "more than 5 files")
    small = run_cli(["check", str(tmp_path)], env={"SIDECAR_BUNDLE_MAX_BYTES": "20"})
    assert_clean_failure(small, "larger than 20 bytes")
    shallow = run_cli(["test", str(tmp_path)], env={"SIDECAR_BUNDLE_MAX_DEPTH": "2"})
    assert_clean_failure(shallow, "more than 2 levels deep")
    for value in ("0", "lots", "100000"):
        bad = run_cli(["check", str(tmp_path)], env={"SIDECAR_BUNDLE_MAX_DEPTH": value})
        assert bad.returncode == 2, (value, bad.stderr)
        assert "SIDECAR_BUNDLE_MAX_DEPTH" in bad.stderr and "Traceback" not in bad.stderr


async def test_run_uses_the_bounds_from_the_environment(
    launch: SidecarLauncher, bundle_dir: Path
) -> None:
    sidecar = await launch(bundle_dir, env={"SIDECAR_BUNDLE_MAX_BYTES": "100"}, wait=False)
    since = time.monotonic()
    while True:
        assert sidecar.proc.poll() is None, f"sidecar died: {sidecar.stderr()[-3000:]}"
        try:
            info = await sidecar.admin_json("/bundle")
        except (OSError, AssertionError):
            info = {}
        if info.get("last_error"):
            break
        assert time.monotonic() - since < 10, f"no rejection reported: {info}"
        await asyncio.sleep(0.05)
    assert "larger than 100 bytes" in json.dumps(info["last_error"])
    assert info["ready"] is False


def test_check_archive_claiming_a_huge_member(tmp_path: Path) -> None:
    """A header may claim any size; it is refused from the header, not by inflating it."""
    archive = tmp_path / "huge.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("bundle.yaml")
        info.size = len(GOOD_YAML)
        tar.addfile(info, io.BytesIO(GOOD_YAML))
        big = tarfile.TarInfo("blob")
        big.size = 64 * 1024 * 1024

        class Zeros(io.RawIOBase):
            left = big.size

            def readinto(self, buf: Any) -> int:
                n = min(len(buf), self.left)
                buf[:n] = bytes(n)
                self.left -= n
                return n

        tar.addfile(big, Zeros())
    assert_clean_failure(run_cli(["check", str(archive)]), "larger than 16777216 bytes")


def test_check_archive_with_a_huge_long_name(tmp_path: Path) -> None:
    """tarfile reads a long-name header whole before yielding its member: the bound
    must hold on the decompressed stream, not only on member sizes."""
    archive = tmp_path / "longname.tar.gz"
    with tarfile.open(archive, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("bundle.yaml")
        info.size = len(GOOD_YAML)
        tar.addfile(info, io.BytesIO(GOOD_YAML))
        tar.addfile(tarfile.TarInfo("n" * (8 * 1024 * 1024)), io.BytesIO(b""))
    limit = {"SIDECAR_BUNDLE_MAX_BYTES": str(1024 * 1024)}
    assert_clean_failure(run_cli(["check", str(archive)], env=limit), "larger than 1048576")


def test_check_corrupt_archive(tmp_path: Path) -> None:
    archive = tmp_path / "b.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00" + b"not really gzip" * 10)
    assert_clean_failure(run_cli(["check", str(archive)]), "not a readable .tar.gz")


def test_check_symlink_loop_in_directory(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "bundle.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "sidecar/v1",
                "revision": "loop",
                "upstreams": {"mock": {"builtin": "mock"}},
                "routes": [{"upstream": "mock"}],
            }
        )
    )
    (bundle / "sub").mkdir()
    plain = run_cli(["check", str(bundle)])
    assert plain.returncode == 0, plain.stderr[-2000:]
    (bundle / "sub" / "again").symlink_to(bundle)
    looped = run_cli(["check", str(bundle)])
    assert looped.returncode == 0, looped.stderr[-2000:]
    # The loop is walked once: the bundle holds the same files, so the same digest.
    assert digest_line(looped.stdout) == digest_line(plain.stdout)


def digest_line(summary: str) -> str:
    return next(line for line in summary.splitlines() if line.strip().startswith("digest"))


# --------------------------------------------------------------------- hot reload


async def chat_revision(sidecar: Sidecar) -> str:
    raw = await sidecar.openai().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    return raw.headers.get("x-sidecar-bundle-revision", "")


async def reload_errors(sidecar: Sidecar) -> float:
    metrics = (await sidecar.admin_get("/metrics"))[1]
    return metric_value(metrics, "sidecar_bundle_reloads", {"result": "error"})


async def wait_for_last_error(sidecar: Sidecar, errors_before: float) -> dict[str, Any]:
    since = time.monotonic()
    while True:
        assert sidecar.proc.poll() is None, f"sidecar died: {sidecar.stderr()[-3000:]}"
        info: dict[str, Any] = await sidecar.admin_json("/bundle")
        if info.get("last_error") and await reload_errors(sidecar) > errors_before:
            return info
        assert time.monotonic() - since < RELOAD_WITHIN + 3, f"no rejection reported: {info}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("kind", ["yaml", "json"])
async def test_hot_reload_of_a_deep_bundle_is_rejected(
    launch: SidecarLauncher,
    tmp_path: Path,
    fake: FakeUpstream,
    fake_claude: FakeUpstream,
    kind: str,
) -> None:
    bundle_dir = tmp_path / "bundle"
    bundle_dir.mkdir()
    good = standard_bundle(fake.url, fake_claude.url)
    name = f"bundle.{kind}"
    good_text = json.dumps(good) if kind == "json" else yaml.safe_dump(good, sort_keys=False)
    (bundle_dir / name).write_text(good_text)
    sidecar = await launch(bundle_dir)
    assert await chat_revision(sidecar) == "r1"
    before = await reload_errors(sidecar)
    await asyncio.sleep(0.1)

    (bundle_dir / name).write_text(deep_json() if kind == "json" else deep_yaml())
    info = await wait_for_last_error(sidecar, before)
    assert info["revision"] == "r1"
    assert "levels deep" in json.dumps(info["last_error"]), info
    # The process is up and serving on the last good bundle.
    assert sidecar.proc.poll() is None
    assert await chat_revision(sidecar) == "r1"
    assert (await sidecar.admin_get("/readyz"))[0] == 200

    # Reverting the bad edit restores what serves: nothing is wrong any more.
    await asyncio.sleep(0.1)
    (bundle_dir / name).write_text(good_text)
    since = time.monotonic()
    while (await sidecar.admin_json("/bundle"))["last_error"] is not None:
        assert time.monotonic() - since < RELOAD_WITHIN + 3, "last_error never cleared"
        await asyncio.sleep(0.05)
    assert await chat_revision(sidecar) == "r1"
    assert sidecar.proc.poll() is None


async def test_start_on_a_deep_bundle_stays_up_not_ready(
    launch: SidecarLauncher, tmp_path: Path
) -> None:
    """A ConfigMap holding a hostile bundle must not crash-loop every pod: the
    sidecar stays up, not ready, and says why."""
    bundle_dir = tmp_path / "bundle"
    bundle_dir.mkdir()
    (bundle_dir / "bundle.yaml").write_text(deep_yaml())
    sidecar = await launch(bundle_dir, wait=False)
    since = time.monotonic()
    while True:
        assert sidecar.proc.poll() is None, f"sidecar died: {sidecar.stderr()[-3000:]}"
        try:
            info = await sidecar.admin_json("/bundle")
        except (OSError, AssertionError):
            info = {}
        if info.get("last_error"):
            break
        assert time.monotonic() - since < 10, f"no rejection reported: {info}"
        await asyncio.sleep(0.05)
    assert info["ready"] is False
    assert "levels deep" in json.dumps(info["last_error"])
    assert (await sidecar.admin_get("/readyz"))[0] == 503
    assert await reload_errors(sidecar) >= 1
    assert '"bundle rejected"' in sidecar.stderr()


async def test_reverted_bad_edit_clears_last_error(
    sidecar: Sidecar, bundle_dir: Path, fake: FakeUpstream, fake_claude: FakeUpstream
) -> None:
    """The file is back to the bundle that serves: /bundle must not report a stale error."""
    good_text = (bundle_dir / "bundle.yaml").read_text()
    before = await reload_errors(sidecar)
    await asyncio.sleep(0.1)
    bad = standard_bundle(fake.url, fake_claude.url, revision="bad")
    bad["routes"].append({"match": {"model": "x-*"}, "upstream": "no-such-upstream"})
    write_bundle(bundle_dir, bad)
    await wait_for_last_error(sidecar, before)

    await asyncio.sleep(0.1)
    (bundle_dir / "bundle.yaml").write_text(good_text)
    since = time.monotonic()
    while (info := await sidecar.admin_json("/bundle"))["last_error"] is not None:
        assert time.monotonic() - since < RELOAD_WITHIN + 3, f"stale last_error: {info}"
        await asyncio.sleep(0.05)
    assert info["revision"] == "r1"
    assert await chat_revision(sidecar) == "r1"


async def test_hot_reload_of_a_deep_cedar_policy_is_rejected(
    sidecar: Sidecar, bundle_dir: Path, fake: FakeUpstream, fake_claude: FakeUpstream
) -> None:
    before = await reload_errors(sidecar)
    await asyncio.sleep(0.1)
    (bundle_dir / "policies").mkdir()
    (bundle_dir / "policies" / "deep.cedar").write_text(deep_policy("parens"))
    bad = standard_bundle(fake.url, fake_claude.url, revision="r2")
    bad["policies"] = ["policies/*.cedar"]
    write_bundle(bundle_dir, bad)
    info = await wait_for_last_error(sidecar, before)
    assert "policies/deep.cedar" in json.dumps(info["last_error"]), info
    assert sidecar.proc.poll() is None
    assert await chat_revision(sidecar) == "r1"


async def test_hot_reload_of_a_duplicate_key_is_rejected(
    sidecar: Sidecar, bundle_dir: Path, fake: FakeUpstream, fake_claude: FakeUpstream
) -> None:
    before = await reload_errors(sidecar)
    await asyncio.sleep(0.1)
    text = yaml.safe_dump(standard_bundle(fake.url, fake_claude.url, revision="r2"))
    (bundle_dir / "bundle.yaml").write_text(text + "revision: r3\n")
    info = await wait_for_last_error(sidecar, before)
    assert "duplicate key 'revision'" in json.dumps(info["last_error"])
    assert await chat_revision(sidecar) == "r1"


# --------------------------------------------------------------------- /bundle content

SECRET_VALUE = "sk-live-0123456789abcdef0123456789abcdef"
KEY_DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


async def test_bundle_status_shows_nothing_sensitive(
    launch: SidecarLauncher, tmp_path: Path, fake: FakeUpstream, fake_claude: FakeUpstream
) -> None:
    good = standard_bundle(fake.url, fake_claude.url)
    good["upstreams"]["keyless"] = {
        "provider": "openai",
        "base_url": "https://user:hunter2pass@api.example.com/v1",
        "api_key": {"env": "PROD_OPENAI_KEY_NAME"},
    }
    good["upstreams"]["filekey"] = {
        "provider": "openai",
        "base_url": "https://api.example.com/v1",
        "api_key": {"file": "/var/run/secrets/very-private/openai-key"},
    }
    bundle_dir = write_bundle(tmp_path / "bundle", good)
    sidecar = await launch(bundle_dir)
    status = (await sidecar.admin_get("/bundle"))[1]
    assert json.loads(status)["warnings"], status  # the missing keys are still reported
    for hidden in ("PROD_OPENAI_KEY_NAME", "very-private", "hunter2pass"):
        assert hidden not in status, status
    before = await reload_errors(sidecar)
    await asyncio.sleep(0.1)

    bad = standard_bundle(fake.url, fake_claude.url, revision="bad")
    bad["upstreams"]["fake"]["api_key"] = SECRET_VALUE  # a literal key where a reference goes
    bad["upstreams"]["fake"]["base_url"] = "ftp://admin:hunter2pass@internal.example/"
    bad["identity"] = {
        "api_keys": [{"principal": "bot", "sha256": [KEY_DIGEST, "nothex" + KEY_DIGEST[6:]]}]
    }
    bad["redis"] = {"url": "redis://:hunter2pass@redis.example:6379"}
    bad["guards"] = {
        "input": [
            {
                "id": "hook",
                "type": "webhook",
                "webhook": {
                    "url": "https://hooks.example/check?token=hunter2pass",
                    "headers": {"X-Hmac-Key": SECRET_VALUE},
                    "timeout_ms": "soon",
                },
            }
        ]
    }
    write_bundle(bundle_dir, bad)
    info = await wait_for_last_error(sidecar, before)
    status = (await sidecar.admin_get("/bundle"))[1]
    assert info["last_error"]["problems"], info
    for hidden in (SECRET_VALUE, KEY_DIGEST, "hunter2pass", KEY_DIGEST[6:]):
        assert hidden not in status, status
    # The operator's own tools still tell the whole story.
    result = run_cli(["check", str(bundle_dir)])
    assert result.returncode == 1
    assert "upstreams.fake.api_key" in result.stderr


def test_check_summary_masks_url_credentials(tmp_path: Path) -> None:
    doc = {
        **MOCK_ONLY,
        "upstreams": {
            "mock": {"builtin": "mock"},
            "corp": {"base_url": "https://svc:hunter2pass@llm.example/v1?key=hunter2pass"},
        },
    }
    write_bundle(tmp_path, doc)
    result = run_cli(["check", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    assert "llm.example" in result.stdout
    assert "hunter2pass" not in result.stdout + result.stderr
