"""The CLI contract: ``--help``, ``sidecar check``, settings from flags and env.

SPEC: ``sidecar check BUNDLE`` exits 0 with a short summary, or non-zero with
EVERY error on stderr, one per line, each starting with the path of the bad
field; ``--help`` works on ``sidecar``, ``sidecar run``, ``sidecar check``;
``python -m sidecar`` works like the ``sidecar`` script; flags win over env.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from fakes.upstream import FakeUpstream

from .harness import (
    REPO_ROOT,
    SidecarLauncher,
    free_port,
    run_cli,
    sidecar_env,
    spawn_sidecar,
    standard_bundle,
    write_bundle,
)


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["check", "--help"]])
def test_help(args: list[str]) -> None:
    result = run_cli(args)
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()
    if args[0] == "--help":
        assert "run" in result.stdout and "check" in result.stdout
    if args[0] == "run":
        for flag in ("--bundle", "--http", "--admin", "--max-body-bytes"):
            assert flag in result.stdout, f"{flag} missing from `sidecar run --help`"


def test_console_script_matches_python_m() -> None:
    script = Path(sys.executable).parent / "sidecar"
    if not script.exists():
        pytest.skip("the `sidecar` console script is not installed in this environment")
    by_script = subprocess.run(
        [str(script), "--help"],
        capture_output=True,
        text=True,
        env=sidecar_env(),
        cwd=REPO_ROOT,
        timeout=30,
        check=False,
    )
    by_module = run_cli(["--help"])
    assert by_script.returncode == 0 == by_module.returncode
    # The program name may differ; the commands listed must not.
    for word in ("run", "check"):
        assert word in by_script.stdout and word in by_module.stdout


def test_check_valid_bundle(tmp_path: Path) -> None:
    bundle = write_bundle(
        tmp_path / "b", standard_bundle("http://127.0.0.1:1", "http://127.0.0.1:2", revision="v7")
    )
    result = run_cli(["check", str(bundle)])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), "check printed no summary"


def test_check_default_bundle() -> None:
    result = run_cli(["check", str(REPO_ROOT / "policy_bundles" / "default")])
    assert result.returncode == 0, result.stderr


def many_errors_bundle() -> dict[str, Any]:
    return {
        "apiVersion": "sidecar/v9",
        "revision": "broken",
        "bogus_top_key": True,
        "upstreams": {
            "fake": {
                "provider": "openai",
                "base_url": "http://127.0.0.1:1",
                "timeoutz": 3,
            },
            "nourl": {"provider": "openai"},
            "mock": {"builtin": "mock"},
        },
        "routes": [
            {"match": {"model": "mock-*"}, "upstream": "mock"},
            {"match": {"model": "gpt-*"}, "upstream": "fake"},
            {"match": {"model": "x-*"}, "upstream": "opnai"},
        ],
    }


def test_check_reports_every_error_with_its_path(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", many_errors_bundle())
    result = run_cli(["check", str(bundle)])
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]

    def line_for(prefix: str, *words: str) -> str:
        for line in lines:
            if line.startswith(prefix) and all(w in line for w in words):
                return line
        raise AssertionError(f"no stderr line starts with {prefix!r} and names {words}: {lines}")

    unknown = line_for("routes[2].upstream", "opnai")
    assert unknown.startswith("routes[2].upstream:")
    line_for("apiVersion")
    line_for("upstreams.nourl", "base_url")
    line_for("upstreams.fake", "timeoutz")
    assert any("bogus_top_key" in line for line in lines), lines
    assert len(lines) >= 5, f"expected every error on its own line: {lines}"


def test_check_unknown_keys_at_every_level(tmp_path: Path) -> None:
    bundle = standard_bundle("http://127.0.0.1:1", "http://127.0.0.1:2")
    bundle["extra_top"] = 1
    bundle["upstreams"]["fake"]["retriez"] = 2
    bundle["routes"][1]["match"]["modle"] = "gpt-*"
    bundle["routes"][3]["weight"] = 5
    result = run_cli(["check", str(write_bundle(tmp_path / "b", bundle))])
    assert result.returncode != 0
    lines = [line.strip() for line in result.stderr.splitlines()]
    for prefix, word in (
        ("upstreams.fake", "retriez"),
        ("routes[1].match", "modle"),
        ("routes[3]", "weight"),
    ):
        assert any(ln.startswith(prefix) and word in ln for ln in lines), (prefix, lines)
    assert any("extra_top" in ln for ln in lines), lines


def test_check_invalid_yaml(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "bundle.yaml").write_text("apiVersion: sidecar/v1\nroutes: [unclosed\n  - x: {\n")
    result = run_cli(["check", str(bundle)])
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip(), "no message for invalid YAML"
    assert any(w in result.stderr.lower() for w in ("yaml", "parse", "line")), result.stderr


def test_check_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "does-not-exist"
    result = run_cli(["check", str(missing)])
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "does-not-exist" in result.stderr


def test_check_directory_without_bundle_file(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run_cli(["check", str(tmp_path / "empty")])
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "bundle" in result.stderr.lower()


def test_check_non_mapping_top_level(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "bundle.yaml").write_text(yaml.safe_dump(["not", "a", "mapping"]))
    result = run_cli(["check", str(bundle)])
    assert result.returncode != 0
    assert "Traceback" not in result.stderr


def test_run_with_invalid_bundle_does_not_serve(tmp_path: Path) -> None:
    """Starting on a bad bundle: exit non-zero naming the error, or stay un-ready (503).

    Either is acceptable; answering /readyz with 200 is not.
    """
    bundle = write_bundle(tmp_path / "b", many_errors_bundle())
    sc = spawn_sidecar(tmp_path, bundle)
    readyz = f"{sc.admin}/readyz"
    not_ready_since: float | None = None
    deadline = time.monotonic() + 8.0
    try:
        while time.monotonic() < deadline:
            if sc.proc.poll() is not None:
                assert sc.proc.returncode != 0
                assert "apiVersion" in sc.stderr(), sc.stderr()
                return
            try:
                with urllib.request.urlopen(readyz, timeout=1):
                    raise AssertionError("/readyz is 200 with no valid bundle")
            except urllib.error.HTTPError as exc:
                assert exc.code == 503, exc.code
                not_ready_since = not_ready_since or time.monotonic()
                if time.monotonic() - not_ready_since > 1.0:
                    return  # consistently not ready
            except OSError:
                pass  # admin listener not up yet
            time.sleep(0.05)
        raise AssertionError("sidecar neither exited nor answered /readyz")
    finally:
        sc.proc.terminate()
        try:
            sc.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            sc.proc.kill()
            sc.proc.wait(timeout=5)


async def test_settings_from_env(
    tmp_path: Path, launch: SidecarLauncher, fake: FakeUpstream, fake_claude: FakeUpstream
) -> None:
    bundle = write_bundle(tmp_path / "b", standard_bundle(fake.url, fake_claude.url))
    sc = await launch(bundle, use_flags=False)
    reply = await sc.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "via env"}]
    )
    assert reply.choices[0].message.content == "fake says: via env"


async def test_flags_win_over_env(
    tmp_path: Path, launch: SidecarLauncher, fake: FakeUpstream, fake_claude: FakeUpstream
) -> None:
    env_bundle = write_bundle(
        tmp_path / "envb", standard_bundle(fake.url, fake_claude.url, revision="from-env")
    )
    flag_bundle = write_bundle(
        tmp_path / "flagb", standard_bundle(fake.url, fake_claude.url, revision="from-flag")
    )
    env_http = free_port()
    sc = await launch(
        flag_bundle,
        env={
            "SIDECAR_BUNDLE": str(env_bundle),
            "SIDECAR_HTTP": f"127.0.0.1:{env_http}",
            "SIDECAR_ADMIN": f"127.0.0.1:{free_port()}",
            "SIDECAR_MAX_BODY_BYTES": "100",
        },
        extra_args=["--max-body-bytes", "100000"],
    )
    raw = await sc.openai().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "p" * 500}]
    )
    assert raw.headers.get("x-sidecar-bundle-revision") == "from-flag"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.get(
                f"http://127.0.0.1:{env_http}/v1/models", timeout=aiohttp.ClientTimeout(total=2)
            ):
                pass


NETNS_PROBE = r"""
import json, subprocess, sys, time, urllib.request

proc = subprocess.Popen([sys.executable, "-m", "sidecar", "run"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
result = {"ready": False}
try:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen("http://127.0.0.1:8702/readyz", timeout=1) as r:
                if r.status == 200:
                    result["ready"] = True
                    break
        except OSError:
            pass
        time.sleep(0.05)
    if result["ready"]:
        body = json.dumps({"model": "mock-echo",
                           "messages": [{"role": "user", "content": "netns-echo-42"}]}).encode()
        req = urllib.request.Request("http://127.0.0.1:8700/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            result["status"] = r.status
            result["reply"] = json.loads(r.read())["choices"][0]["message"]["content"]
finally:
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    result["stderr"] = err.decode(errors="replace")[-2000:]
print(json.dumps(result))
"""


def test_default_listen_addresses(tmp_path: Path) -> None:
    """With no flags or env, the proxy is on 127.0.0.1:8700 and admin on 127.0.0.1:8702.

    Runs inside a private network namespace so the fixed ports cannot collide with
    anything else on the machine; skipped where namespaces are not allowed.
    """
    if not (shutil.which("unshare") and shutil.which("ip")):
        pytest.skip("unshare or ip not installed")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False, timeout=10)
    if probe.returncode != 0:
        pytest.skip("cannot create a network namespace here (unshare -n)")
    script = tmp_path / "probe.py"
    script.write_text(NETNS_PROBE)
    result = subprocess.run(
        [
            "unshare",
            "-n",
            "sh",
            "-c",
            'ip link set lo up && exec "$0" "$1"',
            sys.executable,
            str(script),
        ],
        capture_output=True,
        text=True,
        env=sidecar_env(),
        cwd=tmp_path,
        timeout=40,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["ready"], outcome["stderr"]
    assert outcome["status"] == 200
    assert "netns-echo-42" in outcome["reply"]
