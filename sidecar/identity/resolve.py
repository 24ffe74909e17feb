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
from typing import TYPE_CHECKING, Any

from sidecar.bundle.load import SHAPE
from sidecar.bundle.parse import parse_json
from sidecar.bundle.validate import Problem, format_path
from sidecar.errors import ErrorKind, SidecarError
from sidecar.identity.principal import PodIdentity, Principal

if TYPE_CHECKING:
    # Imported when a bundle configures JWT: PyJWT and cryptography cost several MB of
    # memory in every pod that never uses them.
    from sidecar.identity.jwt import JwtVerifier

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
    jwt: JwtVerifier | None = None
    jwt_issuers: tuple[str, ...] = ()

    @property
    def requires_credential(self) -> bool:
        return bool(self.keys) or self.jwt is not None

    def describe(self) -> str:
        parts = []
        if self.keys:
            principals = len({k.principal.id for k in self.keys.values()})
            parts.append(f"api keys ({len(self.keys)} keys, {principals} principals)")
        if self.jwt is not None:
            parts.append(f"JWT ({', '.join(self.jwt_issuers)})")
        if parts:
            return " + ".join(parts)
        return "pod identity" + (" + trusted headers" if self.trusted_headers else "")


DEFAULT_POD_ROLES = ("agent",)


def compile_jwt(
    section: dict[str, Any] | None, files: Mapping[str, bytes]
) -> tuple[JwtVerifier | None, list[Problem]]:
    """Build the JWT verifier from `identity.jwt`, reporting each problem with its path."""
    entries = (section or {}).get("jwt") or []
    if not entries:
        return None, []
    from sidecar.identity.jwt import ClaimMap, JwtIssuerConfig, JwtVerifier

    problems: list[Problem] = []
    configs: list[JwtIssuerConfig] = []
    for i, entry in enumerate(entries):
        where: list[str | int] = ["identity", "jwt", i]
        jwks: dict[str, Any] | None = None
        if ("jwks_file" in entry) == ("jwks_url" in entry):
            problems.append(
                Problem(format_path(where), "give exactly one of jwks_file or jwks_url")
            )
            continue
        if "jwks_file" in entry:
            data = files.get(entry["jwks_file"])
            if data is None:
                problems.append(
                    Problem(
                        format_path([*where, "jwks_file"]),
                        f"no file {entry['jwks_file']!r} in the bundle",
                    )
                )
                continue
            try:
                jwks = parse_json(data, SHAPE)  # bounded: a bundle file like any other
            except ValueError as exc:
                problems.append(
                    Problem(format_path([*where, "jwks_file"]), f"not a JSON JWKS: {exc}")
                )
                continue
        claims = entry.get("claims") or {}
        configs.append(
            JwtIssuerConfig(
                issuer=entry["issuer"],
                audiences=tuple(entry["audiences"]),
                algorithms=tuple(entry.get("algorithms") or ("RS256", "ES256")),
                jwks=jwks,
                jwks_url=entry.get("jwks_url"),
                leeway_s=float(entry.get("leeway_s", 30.0)),
                claims=ClaimMap(**claims),
                cache_s=float(entry.get("cache_s", 300.0)),
                min_refresh_s=float(entry.get("min_refresh_s", 30.0)),
            )
        )
    if problems:
        return None, problems
    try:
        return JwtVerifier(configs), []
    except ValueError as exc:
        return None, [Problem("identity.jwt", str(exc))]


def compile_identity(
    section: dict[str, Any] | None, jwt: JwtVerifier | None = None
) -> IdentityConfig:
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
        jwt=jwt,
        jwt_issuers=tuple(e["issuer"] for e in section.get("jwt") or ()),
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


async def identify_with_jwt(
    config: IdentityConfig, pod: PodIdentity, headers: Mapping[str, str]
) -> Principal:
    """Bundles with JWT issuers: a token goes to the verifier, anything else to the keys."""
    assert config.jwt is not None
    token = presented_key(headers)
    if token is not None and config.jwt.looks_like_jwt(token):
        return await config.jwt.verify(token)
    if token is not None and config.keys:
        return _by_key(config, headers)
    raise SidecarError(
        ErrorKind.UNAUTHENTICATED,
        "this sidecar requires a JWT from a trusted issuer: send 'Authorization: Bearer <jwt>'",
        code="missing_token" if token is None else "invalid_token",
    )


def identify(config: IdentityConfig, pod: PodIdentity, headers: Mapping[str, str]) -> Principal:
    """Pod identity, trusted headers or API keys; bundles with JWT use identify_with_jwt."""
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
