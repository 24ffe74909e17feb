"""The caller, as every later stage sees it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    id: str
    tenant: str
    agent: str
    user: str = ""
    roles: frozenset[str] = frozenset()
    via: str = "pod"  # how it was established: pod | api_key | jwt | trusted_headers


@dataclass(frozen=True, slots=True)
class PodIdentity:
    """The sidecar's own agent, from settings (typically the Kubernetes downward API)."""

    agent: str
    tenant: str
