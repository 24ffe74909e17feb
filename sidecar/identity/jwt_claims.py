"""Which claims of a verified token name the agent, and how they become a Principal.

Identity providers name tenant, roles and user claims their own way
(namespaced URLs, Keycloak's nested `realm_access.roles`); the bundle says
which, and this is the one place those names are read. Apart from `jwt`, so
what a token means can be read without how it is checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.identity.jwt_errors import _fail
from sidecar.identity.principal import Principal


@dataclass(frozen=True)
class ClaimMap:
    """Which token claims give the Principal's fields.

    A name is looked up literally first (so namespaced claims such as
    ``https://example.com/roles`` work), then as a dotted path into nested
    objects (Keycloak's ``realm_access.roles``).
    """

    principal: str = "sub"
    tenant: str = "tenant"
    user: str | None = None
    agent: str | None = None
    roles: str | None = "roles"


def _claim(payload: Mapping[str, Any], name: str) -> Any:
    if name in payload:
        return payload[name]
    if "." not in name:
        return None
    value: Any = payload
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _principal(payload: Mapping[str, Any], claims: ClaimMap) -> Principal:
    def required(name: str) -> str:
        value = _claim(payload, name)
        if value is None:
            _fail(f"token is missing required claim {name!r}")
        if not isinstance(value, str) or not value:
            _fail(f"token claim {name!r} must be a non-empty string")
        return value

    def optional(name: str | None) -> str | None:
        if name is None:
            return None
        value = _claim(payload, name)
        if value is None:
            return None
        if not isinstance(value, str):
            _fail(f"token claim {name!r} must be a string")
        return value or None

    pid = required(claims.principal)
    tenant = required(claims.tenant)
    roles: frozenset[str] = frozenset()
    if claims.roles is not None:
        raw = _claim(payload, claims.roles)
        if isinstance(raw, str):
            roles = frozenset(raw.split())
        elif isinstance(raw, list) and all(isinstance(r, str) for r in raw):
            roles = frozenset(r for r in raw if r)
        elif raw is not None:
            _fail(
                f"token claim {claims.roles!r} must be a list of strings "
                "or a space-separated string"
            )
    return Principal(
        id=pid,
        tenant=tenant,
        agent=optional(claims.agent) or pid,
        user=optional(claims.user) or "",
        roles=roles,
        via="jwt",
    )
