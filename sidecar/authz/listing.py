"""Which of the bundle's models a caller may see listed: those it may use at all."""

from __future__ import annotations

from sidecar.authz.context import listing_context
from sidecar.bundle.snapshot import Snapshot
from sidecar.identity.principal import Principal

LISTING_ACTIONS = ("llm.models", "llm.chat", "llm.responses", "llm.completion", "llm.embeddings")


def permitted_models(snapshot: Snapshot, principal: Principal) -> list[str]:
    """The bundle's models this caller may use with any action."""
    context = listing_context(principal)
    decide = snapshot.authorizer.decide
    return [
        m
        for m in snapshot.models
        if any(decide(principal, a, "Model", m, context).allowed for a in LISTING_ACTIONS)
    ]
