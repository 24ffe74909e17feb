"""Decide one call with Cedar: default deny, `forbid` wins, decisions cached per snapshot.

A Cedar evaluation costs about 100 µs in cedarpy, mostly building the
request, plus about a microsecond per policy in the set. Two things keep
that off the hot path:
- a decision depends only on the principal, the action, the resource and
  the context fields the policies actually read (found at load), so the
  result for that key is cached for the life of the snapshot (bounded: the
  least recently used decisions go first, so callers seen all the time stay
  cached while a stream of new ones passes through);
- a miss is evaluated against only the policies whose scope (principal,
  action, resource type) can match the request — the others cannot apply,
  so leaving them out changes no decision. Those subsets are built once per
  kind of caller and cached too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cedarpy
import orjson

from sidecar.authz.policy import CompiledPolicies
from sidecar.identity.principal import Principal
from sidecar.lru import LruCache
from sidecar.names import fold

CACHE_LIMIT = 4096
SUBSET_LIMIT = 512
_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    policies: tuple[str, ...]  # the @ids of the policies that decided
    errors: tuple[str, ...] = ()


class Authorizer:
    def __init__(self, compiled: CompiledPolicies | None) -> None:
        self._compiled = compiled
        self._cache: LruCache[tuple[Any, ...], Decision] = LruCache(CACHE_LIMIT)
        self._subsets: LruCache[tuple[Any, ...], cedarpy.PolicySet | None] = LruCache(SUBSET_LIMIT)
        self._index = _index(compiled)

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
        resource_id = fold(resource_id)  # Cedar sees every model and tool name folded
        keys = compiled.context_keys
        fields = context.items() if keys is None else ((k, context.get(k)) for k in keys)
        key = (principal, action, resource_type, resource_id, tuple(sorted(fields)))
        decision = self._cache.get(key, None)
        if decision is None:
            decision = self._evaluate(
                compiled, principal, action, resource_type, resource_id, context
            )
            self._cache.put(key, decision)
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
        policy_set = self._subset(compiled, principal, action, resource_type)
        if policy_set is None:
            return Decision(False, ())  # no policy can apply: default deny, no Cedar call
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
        result = cedarpy.is_authorized(request, policy_set, orjson.dumps(entities).decode())
        labels = compiled.labels
        reasons = tuple(labels.get(p, p) for p in result.diagnostics.reasons)
        errors = tuple(str(e) for e in result.diagnostics.errors)
        return Decision(result.allowed, reasons, errors)

    def _subset(
        self, compiled: CompiledPolicies, principal: Principal, action: str, resource_type: str
    ) -> cedarpy.PolicySet | None:
        index = self._index
        named = principal.id if principal.id in index.named_principals else ""
        key = (named, principal.roles, principal.tenant, action, resource_type)
        cached = self._subsets.get(key, _MISSING)
        if cached is not _MISSING:
            return cached
        candidates = set(index.by_member.get(("", ""), ()))
        candidates.update(index.by_member.get(("Sidecar::Tenant", principal.tenant), ()))
        candidates.update(index.by_member.get(("Sidecar::Principal", principal.id), ()))
        for role in principal.roles:
            candidates.update(index.by_member.get(("Sidecar::Role", role), ()))
        rtype = f"Sidecar::{resource_type}"
        chosen = {
            pid: compiled.est[pid]
            for pid in sorted(candidates)
            if _principal_may_match(compiled.est[pid].get("principal"), principal)
            and _action_may_match(compiled.est[pid].get("action"), action)
            and _resource_may_match(compiled.est[pid].get("resource"), rtype)
        }
        policy_set = None
        if chosen:
            document = {"staticPolicies": chosen, "templates": {}, "templateLinks": []}
            policy_set = cedarpy.PolicySet.from_json_str(orjson.dumps(document).decode())
        self._subsets.put(key, policy_set)
        return policy_set


@dataclass
class _ScopeIndex:
    """Policies by the principal-side entity their scope names; ("", "") for the rest."""

    by_member: dict[tuple[str, str], list[str]]
    named_principals: frozenset[str]


def _index(compiled: CompiledPolicies | None) -> _ScopeIndex:
    by_member: dict[tuple[str, str], list[str]] = {}
    named: set[str] = set()
    for pid, est in (compiled.est if compiled else {}).items():
        scope = est.get("principal")
        entity: Any = None
        if isinstance(scope, dict):
            if scope.get("op") in ("==", "in"):
                entity = scope.get("entity")
            elif scope.get("op") == "is" and isinstance(scope.get("in"), dict):
                entity = scope["in"].get("entity")
        key = ("", "")
        if isinstance(entity, dict) and entity.get("type") in (
            "Sidecar::Role",
            "Sidecar::Tenant",
            "Sidecar::Principal",
        ):
            key = (str(entity["type"]), str(entity.get("id")))
            if key[0] == "Sidecar::Principal":
                named.add(key[1])
        by_member.setdefault(key, []).append(pid)
    return _ScopeIndex(by_member, frozenset(named))


# Scope tests over Cedar's JSON policy form. Each answers "could this policy's scope
# match?"; anything not understood answers yes, so a subset never loses a policy that
# could apply.


def _principal_may_match(scope: Any, p: Principal) -> bool:
    if not isinstance(scope, dict):
        return True
    op = scope.get("op")
    if op == "All":
        return True
    if op == "==":
        entity = scope.get("entity") or {}
        return bool(entity.get("type") == "Sidecar::Principal" and entity.get("id") == p.id)
    if op == "in":
        return _member(scope.get("entity"), p)
    if op == "is":
        if scope.get("entity_type") != "Sidecar::Principal":
            return False
        inner = scope.get("in")
        return True if not isinstance(inner, dict) else _member(inner.get("entity"), p)
    return True


def _member(entity: Any, p: Principal) -> bool:
    if not isinstance(entity, dict):
        return True
    kind, ident = entity.get("type"), entity.get("id")
    if kind == "Sidecar::Role":
        return ident in p.roles
    if kind == "Sidecar::Tenant":
        return bool(ident == p.tenant)
    if kind == "Sidecar::Principal":
        return bool(ident == p.id)
    return True


def _action_may_match(scope: Any, action: str) -> bool:
    if not isinstance(scope, dict) or scope.get("op") == "All":
        return True
    entities = scope.get("entities")
    if isinstance(entities, list):
        return any(isinstance(e, dict) and e.get("id") == action for e in entities)
    entity = scope.get("entity")
    if isinstance(entity, dict):
        return bool(entity.get("id") == action)
    return True


def _resource_may_match(scope: Any, resource_type: str) -> bool:
    if not isinstance(scope, dict) or scope.get("op") == "All":
        return True
    if scope.get("op") == "is":
        return bool(scope.get("entity_type") == resource_type)
    if scope.get("op") == "==":
        entity = scope.get("entity") or {}
        return bool(entity.get("type") == resource_type)
    return True
