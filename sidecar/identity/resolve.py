"""Resolve a request's headers into a Principal, per the bundle's `identity` section.

Sans-IO: a pure function of the compiled identity config, the pod identity
and the request headers, so every credential edge case is a unit test.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sidecar.errors import ErrorKind, SidecarError
from sidecar.identity.principal import PodIdentity, Principal

TENANT_HEADER = "x-sidecar-tenant"
USER_HEADER = "x-sidecar-user"


@dataclass(frozen=True)
class KeyEntry:
    digest: bytes
    principal: Principal


@dataclass(frozen=True)
class IdentityConfig:
    pod_roles: frozenset[str] = frozenset({"agent"})
    keys: Mapping[str, KeyEntry] = field(default_factory=lambda: MappingProxyType({}))
    trusted_headers: bool = False

    @property
    def requires_credential(self) -> bool:
        return bool(self.keys)

    def describe(self) -> str:
        if self.keys:
            principals = len({k.principal.id for k in self.keys.values()})
            return f"api keys ({len(self.keys)} keys, {principals} principals)"
        return "pod identity" + (" + trusted headers" if self.trusted_headers else "")


DEFAULT_POD_ROLES = ("agent",)


def compile_identity(section: dict[str, Any] | None) -> IdentityConfig:
    section = section or {}
    pod = section.get("pod") or {}
    pod_roles = frozenset(pod.get("roles", DEFAULT_POD_ROLES))
    keys: dict[str, KeyEntry] = {}
    for entry in section.get("api_keys") or ():
        principal = Principal(
            id=entry["principal"],
            tenant=entry["tenant"],
            agent=entry["principal"],
            user=entry.get("user", ""),
            roles=frozenset(entry.get("roles") or ()),
            via="api_key",
        )
        for digest in entry["sha256"]:
            hexd = digest.lower()
            keys[hexd] = KeyEntry(bytes.fromhex(hexd), principal)
    return IdentityConfig(
        pod_roles=pod_roles,
        keys=MappingProxyType(keys),
        trusted_headers=bool(section.get("trusted_headers", False)),
    )


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key the agent sent: `Authorization: Bearer K` (OpenAI, Anthropic 2.x) or `x-api-key`."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


def identify(config: IdentityConfig, pod: PodIdentity, headers: Mapping[str, str]) -> Principal:
    if config.requires_credential:
        return _by_key(config, headers)
    tenant, user = pod.tenant, ""
    via = "pod"
    if config.trusted_headers:
        tenant = headers.get(TENANT_HEADER, "").strip() or tenant
        user = headers.get(USER_HEADER, "").strip()
        via = "trusted_headers"
    return Principal(
        id=pod.agent, tenant=tenant, agent=pod.agent, user=user, roles=config.pod_roles, via=via
    )


def _by_key(config: IdentityConfig, headers: Mapping[str, str]) -> Principal:
    key = presented_key(headers)
    if key is None:
        raise SidecarError(
            ErrorKind.UNAUTHENTICATED,
            "this sidecar requires an API key: send 'Authorization: Bearer <key>' "
            "(the SDK's api_key) or 'x-api-key'",
            code="missing_api_key",
        )
    digest = hashlib.sha256(key.encode()).digest()
    entry = config.keys.get(digest.hex())
    # The lookup is by digest; compare the digests in constant time all the same.
    if entry is None or not hmac.compare_digest(entry.digest, digest):
        raise SidecarError(
            ErrorKind.UNAUTHENTICATED,
            "the API key is not known to this sidecar's policy bundle",
            code="invalid_api_key",
        )
    return entry.principal
