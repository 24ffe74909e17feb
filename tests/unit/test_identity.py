"""Identity resolution: pod identity, trusted headers, virtual API keys."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.bundle.compile import BundleInvalid, load_snapshot
from sidecar.errors import ErrorKind, SidecarError
from sidecar.identity.principal import PodIdentity
from sidecar.identity.resolve import compile_identity, identify

POD = PodIdentity(agent="billing-agent", tenant="acme")


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


KEYS = compile_identity(
    {
        "api_keys": [
            {
                "principal": "bot-a",
                "tenant": "t1",
                "user": "u1",
                "roles": ["analyst"],
                "sha256": [sha("key-old"), sha("key-new").upper()],
            },
            {"principal": "bot-b", "tenant": "t2", "sha256": [sha("key-b")]},
        ]
    }
)


def test_pod_identity_ignores_any_presented_key() -> None:
    config = compile_identity({"pod": {"roles": ["agent"]}})
    p = identify(config, POD, {"authorization": "Bearer whatever", "x-sidecar-tenant": "evil"})
    assert (p.id, p.tenant, p.agent, p.user, p.roles, p.via) == (
        "billing-agent",
        "acme",
        "billing-agent",
        "",
        frozenset({"agent"}),
        "pod",
    )


def test_trusted_headers_only_when_enabled() -> None:
    config = compile_identity({"trusted_headers": True})
    p = identify(config, POD, {"x-sidecar-tenant": "globex", "x-sidecar-user": "jane"})
    assert (p.tenant, p.user, p.via) == ("globex", "jane", "trusted_headers")
    assert identify(config, POD, {}).tenant == "acme"  # absent header: the pod's tenant


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": "Bearer key-old"},
        {"authorization": "bearer key-new"},  # rotated key, scheme in any case
        {"x-api-key": "key-new"},
    ],
)
def test_known_keys(headers: dict[str, str]) -> None:
    p = identify(KEYS, POD, headers)
    assert (p.id, p.tenant, p.user, p.roles, p.via) == (
        "bot-a",
        "t1",
        "u1",
        frozenset({"analyst"}),
        "api_key",
    )


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"authorization": "Basic abc"}, "missing_api_key"),
        ({"authorization": "Bearer "}, "missing_api_key"),
        ({"authorization": "Bearer key-unknown"}, "invalid_api_key"),
        ({"x-api-key": sha("key-old")}, "invalid_api_key"),  # the digest itself is no key
    ],
)
def test_refused_keys(headers: dict[str, str], code: str) -> None:
    with pytest.raises(SidecarError) as info:
        identify(KEYS, POD, headers)
    assert info.value.kind is ErrorKind.UNAUTHENTICATED
    assert info.value.code == code


def test_bundle_identity_errors(tmp_path: Path) -> None:
    doc: dict[str, Any] = {
        "apiVersion": "sidecar/v1",
        "revision": "r",
        "identity": {
            "api_keys": [
                {"principal": "a", "tenant": "t", "sha256": [sha("k1")]},
                {"principal": "a", "tenant": "t", "sha256": [sha("k1").upper(), "abc"]},
                {"principal": "b", "sha256": []},
            ],
            "trusted_header": True,
        },
    }
    (tmp_path / "bundle.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(BundleInvalid) as info:
        load_snapshot(tmp_path)
    problems = [str(p) for p in info.value.problems]
    assert any(p.startswith("identity.api_keys[1].sha256[1]: ") for p in problems)
    assert "identity.api_keys[2].tenant: required field is missing" in problems
    assert any(p.startswith("identity.api_keys[2].sha256: ") for p in problems)
    assert (
        "identity.api_keys[1].principal: principal 'a' is already defined at "
        "identity.api_keys[0]; list all its keys there"
    ) in problems
    assert (
        "identity.api_keys[1].sha256[0]: the same key digest is already listed at "
        "identity.api_keys[0]"
    ) in problems
    assert (
        "identity.trusted_header: unknown field 'trusted_header' (did you mean 'trusted_headers'?)"
    ) in problems
