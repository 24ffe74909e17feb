"""Bundles: every error reported with its path; valid ones compile into routes."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.bundle.check import check
from sidecar.bundle.compile import BundleInvalid, load_snapshot
from sidecar.bundle.load import BundleReadError, read_bundle
from sidecar.bundle.watch import default_bundle_path

GOOD: dict[str, Any] = {
    "apiVersion": "sidecar/v1",
    "revision": "r1",
    "upstreams": {
        "openai": {"base_url": "https://api.example.com/v1", "api_key": {"env": "TEST_KEY_X"}},
        "claude": {
            "provider": "anthropic",
            "base_url": "http://127.0.0.1:9",
            "headers": {"X-A": "b"},
        },
        "mock": {"builtin": "mock", "models": ["mock-a", "other"]},
    },
    "routes": [
        {"match": {"model": "mock-*"}, "upstream": "mock"},
        {
            "name": "chat",
            "match": {"path": "/v1/chat/completions", "model": "gpt-*"},
            "upstream": "openai",
        },
        {"match": {"model": "claude-*"}, "upstream": "claude"},
    ],
}


def write(tmp_path: Path, doc: object, name: str = "bundle.yaml") -> Path:
    (tmp_path / name).write_text(yaml.safe_dump(doc))
    return tmp_path


def problems_of(tmp_path: Path, doc: object) -> list[str]:
    with pytest.raises(BundleInvalid) as info:
        load_snapshot(write(tmp_path, doc))
    return [str(p) for p in info.value.problems]


def test_good_bundle_compiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_KEY_X", "sk-live")
    snap = load_snapshot(write(tmp_path, GOOD))
    assert snap.revision == "r1"
    route = snap.route("/v1/chat/completions", "gpt-4o")
    assert route is not None and route.name == "chat" and route.upstream == "openai"
    assert snap.route("/v1/embeddings", "gpt-4o") is None  # path must match too
    assert snap.route("/v1/messages", "claude-3") is not None
    assert snap.route("/v1/chat/completions", None) is None
    spec = snap.upstreams["openai"]
    assert spec.url_for("/v1/chat/completions") == "https://api.example.com/v1/chat/completions"
    assert ("Authorization", "Bearer sk-live") in spec.headers
    claude = snap.upstreams["claude"]
    assert claude.url_for("/v1/messages") == "http://127.0.0.1:9/v1/messages"
    assert claude.headers == (("X-A", "b"),)  # no key configured: nothing injected
    # only models some route actually reaches are listed
    assert snap.models == ("mock-a",)
    assert snap.warnings == ()


def test_missing_env_key_is_a_warning_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_KEY_X", raising=False)
    snap = load_snapshot(write(tmp_path, GOOD))
    assert snap.upstreams["openai"].credential_problem is not None
    assert "TEST_KEY_X" in snap.warnings[0]


def test_key_from_file(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("sk-from-file\n")
    doc = {
        **GOOD,
        "upstreams": {
            **GOOD["upstreams"],
            "openai": {"base_url": "http://x", "api_key": {"file": str(key)}},
        },
    }
    bundle = tmp_path / "b"
    bundle.mkdir()
    snap = load_snapshot(write(bundle, doc))
    assert ("Authorization", "Bearer sk-from-file") in snap.upstreams["openai"].headers


def test_every_error_with_its_path(tmp_path: Path) -> None:
    doc = {
        "apiVersion": "sidecar/v2",
        "revision": "r1",
        "upstreams": {
            "openai": {"base_url": "https://api.openai.com"},
            "broken": {"provider": "openai"},
            "weird": {"base_url": "ftp://x", "provider": "cohere"},
            "keyed": {"base_url": "http://x", "api_key": {"env": "A", "file": "/b"}},
        },
        "routes": [
            {"upstream": "openai"},
            {"upstream": "openai", "match": {"modle": "x"}},
            {"upstream": "opnai"},
            "not a route",
        ],
        "gaurds": {},
    }
    problems = problems_of(tmp_path, doc)
    assert 'apiVersion: must be "sidecar/v1"' in problems
    assert "upstreams.broken.base_url: required field is missing" in problems
    assert any(p.startswith("upstreams.weird.base_url:") for p in problems)
    assert any(p.startswith("upstreams.weird.provider: must be one of") for p in problems)
    assert "upstreams.keyed.api_key: give exactly one of {env: NAME} or {file: PATH}" in problems
    assert "routes[1].match.modle: unknown field 'modle' (did you mean 'model'?)" in problems
    assert "gaurds: unknown field 'gaurds' (did you mean 'guards'?)" in problems
    # broken references are reported together with schema errors, not after them
    assert "routes[2].upstream: unknown upstream 'opnai' (did you mean 'openai'?)" in problems
    assert any(p.startswith("routes[3]:") for p in problems)
    assert len(problems) == 9


def test_reference_errors(tmp_path: Path) -> None:
    doc = {
        **GOOD,
        "routes": [
            {"match": {"model": "mock-*"}, "upstream": "mock"},
            {"name": "a", "upstream": "mock"},
            {"name": "a", "match": {"model": "gpt-[4"}, "upstream": "opnai"},
        ],
    }
    problems = problems_of(tmp_path, doc)
    assert problems == [
        "routes[2].match.model: unbalanced '[' in glob 'gpt-[4'",
        "routes[2].name: duplicate route name 'a' (also routes[1])",
        "routes[2].upstream: unknown upstream 'opnai' (did you mean 'openai'?)",
    ]


def test_unreadable_bundles(tmp_path: Path) -> None:
    with pytest.raises(BundleReadError, match="no such file"):
        read_bundle(tmp_path / "missing")
    with pytest.raises(BundleReadError, match=r"no bundle\.yaml"):
        read_bundle(tmp_path)
    (tmp_path / "bundle.yaml").write_text("routes: [\n")
    with pytest.raises(BundleReadError, match="not valid YAML"):
        read_bundle(tmp_path)
    (tmp_path / "bundle.yaml").write_text("- a list\n")
    with pytest.raises(BundleInvalid):
        load_snapshot(tmp_path)


def test_json_and_tar_gz_bundles(tmp_path: Path) -> None:
    import json

    jdir = tmp_path / "j"
    jdir.mkdir()
    (jdir / "bundle.json").write_text(json.dumps(GOOD))
    assert load_snapshot(jdir).revision == "r1"

    data = yaml.safe_dump(GOOD).encode()
    archive = tmp_path / "b.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("./bundle.yaml")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    snap = load_snapshot(archive)
    assert snap.revision == "r1"
    assert snap.digest == load_snapshot(archive).digest


def test_unsafe_tar_member_rejected(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../bundle.yaml")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(BundleReadError, match="unsafe path"):
        read_bundle(archive)


def test_configmap_layout_reads_current_generation(tmp_path: Path) -> None:
    gen1 = tmp_path / "..2026_01"
    gen1.mkdir()
    (gen1 / "bundle.yaml").write_text(yaml.safe_dump(GOOD))
    (tmp_path / "..data").symlink_to(gen1.name)
    (tmp_path / "bundle.yaml").symlink_to("..data/bundle.yaml")
    first = read_bundle(tmp_path)
    assert list(first.files) == ["bundle.yaml"]
    gen2 = tmp_path / "..2026_02"
    gen2.mkdir()
    (gen2 / "bundle.yaml").write_text(yaml.safe_dump({**GOOD, "revision": "r2"}))
    (tmp_path / "..data_tmp").symlink_to(gen2.name)
    (tmp_path / "..data_tmp").replace(tmp_path / "..data")
    second = read_bundle(tmp_path)
    assert second.document["revision"] == "r2"
    assert second.digest != first.digest


def test_default_bundle_is_valid_without_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    snap = load_snapshot(default_bundle_path())
    route = snap.route("/v1/chat/completions", "mock-echo")
    assert route is not None and snap.upstreams[route.upstream].kind == "mock"
    for model in ("gpt-4o", "o3-mini", "claude-sonnet-4"):
        route = snap.route("/v1/chat/completions", model)
        assert route is not None and route.upstream != "mock"


def test_check_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    assert check(str(write(tmp_path, GOOD)), sys.stdout, sys.stderr) == 0
    out = capsys.readouterr().out
    assert "revision   r1" in out and "-> openai" in out
    bad = {**GOOD, "routes": [{"upstream": "x"}, {"upstream": "y"}]}
    assert check(str(write(tmp_path, bad)), sys.stdout, sys.stderr) == 1
    err = capsys.readouterr().err
    assert "routes[0].upstream: unknown upstream 'x'" in err
    assert "routes[1].upstream: unknown upstream 'y'" in err


REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "bundle",
    [
        *sorted(p.parent for p in (REPO / "policy_bundles").glob("**/bundle.yaml")),
        REPO / "k8s" / "base",
    ],
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_shipped_bundles_are_valid(bundle: Path) -> None:
    assert load_snapshot(bundle).revision
