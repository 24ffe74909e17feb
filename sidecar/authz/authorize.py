"""Decide one call with Cedar: default deny, `forbid` wins, decisions cached per snapshot.

A Cedar evaluation costs about 100 µs in cedarpy, mostly building the
request. A decision depends only on the principal, the action, the resource
and the context fields the policies actually read (found at load), so the
result for that key is cached for the life of the snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cedarpy

from sidecar.authz.policy import CompiledPolicies
from sidecar.identity.principal import Principal

CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    policies: tuple[str, ...]  # the @ids of the policies that decided
    errors: tuple[str, ...] = ()


class Authorizer:
    def __init__(self, compiled: CompiledPolicies | None) -> None:
        self._compiled = compiled
        self._cache: dict[tuple[Any, ...], Decision] = {}

    @property
    def policy_count(self) -> int:
        return self._compiled.count if self._compiled else 0

    def decide(
        self,
        principal: Principal,
        action: str,
        resource_type: str,
        resource_id: str,
        context: Mapping[str, Any],
    ) -> Decision:
        compiled = self._compiled
        if compiled is None:
            return Decision(False, ())
        keys = compiled.context_keys
        fields = context.items() if keys is None else ((k, context.get(k)) for k in keys)
        key = (principal, action, resource_type, resource_id, tuple(sorted(fields)))
        decision = self._cache.get(key)
        if decision is None:
            decision = self._evaluate(
                compiled, principal, action, resource_type, resource_id, context
            )
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = decision
        return decision

    def _evaluate(
        self,
        compiled: CompiledPolicies,
        principal: Principal,
        action: str,
        resource_type: str,
        resource_id: str,
        context: Mapping[str, Any],
    ) -> Decision:
        principal_uid = {"type": "Sidecar::Principal", "id": principal.id}
        resource_uid = {"type": f"Sidecar::{resource_type}", "id": resource_id}
        entities = [
            {
                "uid": principal_uid,
                "attrs": {
                    "tenant": principal.tenant,
                    "agent": principal.agent,
                    "user": principal.user,
                    "via": principal.via,
                },
                "parents": [{"type": "Sidecar::Role", "id": r} for r in sorted(principal.roles)]
                + [{"type": "Sidecar::Tenant", "id": principal.tenant}],
            },
            {"uid": resource_uid, "attrs": {"name": resource_id}, "parents": []},
        ]
        request = {
            "principal": principal_uid,
            "action": {"type": "Sidecar::Action", "id": action},
            "resource": resource_uid,
            "context": {
                k: sorted(v) if isinstance(v, frozenset) else v for k, v in context.items()
            },
        }
        result = cedarpy.is_authorized(request, compiled.policy_set, json.dumps(entities))
        labels = compiled.labels
        reasons = tuple(labels.get(p, p) for p in result.diagnostics.reasons)
        errors = tuple(str(e) for e in result.diagnostics.errors)
        return Decision(result.allowed, reasons, errors)
