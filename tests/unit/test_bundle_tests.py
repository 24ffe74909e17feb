"""`sidecar test`: a bundle's decision tests pass, fail loudly, and set the exit code."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.authz.testing import test_command as run_bundle_tests
from sidecar.identity.principal import PodIdentity

REPO = Path(__file__).resolve().parents[2]
POD = PodIdentity("agent", "default")


def run(source: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_bundle_tests(str(source), out, err, POD)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    "bundle",
    [
        *sorted(p.parent for p in (REPO / "policy_bundles").glob("**/bundle.yaml")),
        REPO / "k8s" / "base",
    ],
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_shipped_bundle_tests_pass(bundle: Path) -> None:
    code, out, _ = run(bundle)
    assert code == 0, out
    assert out.splitlines()[-1].endswith(" passed, 0 failed")


def write(tmp_path: Path, tests: list[dict[str, Any]]) -> Path:
    doc = {
        "apiVersion": "sidecar/v1",
        "revision": "t",
        "identity": {"api_keys": [{"principal": "bot", "tenant": "t", "sha256": ["a" * 64]}]},
        "roles": {"agent": [{"actions": ["llm.chat"], "models": ["mock-*"]}]},
        "tests": tests,
    }
    (tmp_path / "bundle.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path


def test_failures_say_what_was_expected_and_exit_non_zero(tmp_path: Path) -> None:
    code, out, _ = run(
        write(
            tmp_path,
            [
                {
                    "name": "ok",
                    "principal": "pod",
                    "action": "llm.chat",
                    "model": "mock-a",
                    "expect": "allow",
                },
                {
                    "name": "wrong",
                    "principal": "pod",
                    "action": "llm.chat",
                    "model": "gpt-4o",
                    "expect": "allow",
                },
                {
                    "name": "wrong policies",
                    "principal": "pod",
                    "action": "llm.chat",
                    "model": "mock-a",
                    "expect": "allow",
                    "policies": ["something-else"],
                },
                {
                    "name": "who",
                    "principal": "ghost",
                    "action": "llm.chat",
                    "model": "x",
                    "expect": "deny",
                },
                {
                    "name": "key holder",
                    "principal": "bot",
                    "action": "llm.chat",
                    "model": "mock-a",
                    "expect": "deny",
                },
            ],
        )
    )
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == "PASS  ok: allow by role:agent[0]"
    assert lines[1] == "FAIL  wrong: expected allow, got deny (deny by default deny)"
    assert lines[2].startswith(
        "FAIL  wrong policies: expected policies ['something-else'], got ['role:agent[0]']"
    )
    assert lines[3].startswith("FAIL  who: no principal 'ghost' in identity.api_keys")
    assert lines[4] == "PASS  key holder: deny by default deny"  # bot has no roles
    assert lines[-1] == "2 passed, 3 failed"


def test_invalid_or_testless_bundles_exit_non_zero(tmp_path: Path) -> None:
    (tmp_path / "bundle.yaml").write_text(
        "apiVersion: sidecar/v1\nrevision: x\ntests: [{name: n}]\n"
    )
    code, _, err = run(tmp_path)
    assert code == 1 and "tests[0].principal: required field is missing" in err
    (tmp_path / "bundle.yaml").write_text("apiVersion: sidecar/v1\nrevision: x\n")
    code, _, err = run(tmp_path)
    assert code == 1 and "has no tests" in err


def test_cli_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "test", str(REPO / "policy_bundles" / "default")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "5 passed, 0 failed"


def test_check_names_the_file_and_line_of_a_bad_policy(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "rules.cedar").write_text(
        '// rules\n@id("ok")\npermit (principal, action, resource);\n\n'
        '@id("typo")\nforbid (principal, action, resource)\nwhen { principal.tenent == "x" };\n'
    )
    (tmp_path / "bundle.yaml").write_text(
        "apiVersion: sidecar/v1\nrevision: x\npolicies: [policies/*.cedar]\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "check", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "policies/rules.cedar:7: @id('typo'):" in result.stderr
    assert "tenent" in result.stderr
