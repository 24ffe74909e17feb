"""The compiled, immutable form of a bundle that requests read.

Everything a request needs is decided here, once per bundle load: globs are
compiled, credentials resolved, auth headers built. A request takes the
snapshot that is current when it starts and keeps it to the end.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sidecar.authz.authorize import Authorizer
from sidecar.call import Provider
from sidecar.guards.config import GuardSet
from sidecar.identity.resolve import IdentityConfig
from sidecar.limits.rules import LimitSet
from sidecar.resilience.policy import DEFAULT_FALLBACK_ON, UpstreamPolicy
from sidecar.upstream.config import TransportConfig


@dataclass(frozen=True, slots=True)
class UpstreamSpec:
    name: str
    kind: Literal["http", "mock"]
    provider: Provider | None  # None for the mock, which speaks both dialects
    base_url: str = ""
    origin: str = ""  # scheme://host:port, for server.address and the session pool
    host: str = ""
    port: int = 0
    prefix: str = ""  # base_url without a trailing /v1; request paths are appended to it
    headers: tuple[tuple[str, str], ...] = ()  # static headers and the injected credential
    credential_problem: str | None = None  # why no credential could be injected
    models: tuple[str, ...] = ()
    chunk_delay: float = 0.0
    transport: TransportConfig = field(default_factory=TransportConfig)  # proxy, TLS, cap

    def url_for(self, path: str) -> str:
        return self.prefix + path

    @property
    def provider_name(self) -> str:
        return self.provider.value if self.provider else "sidecar.mock"


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    upstream: str
    path: re.Pattern[str] | None
    model: re.Pattern[str] | None
    path_glob: str = "*"
    model_glob: str = "*"
    model_rewrite: str | None = None  # the primary upstream's name for the model
    fallbacks: tuple[tuple[str, str | None], ...] = ()  # (upstream, model rewrite), in order
    fallback_on: frozenset[int] = DEFAULT_FALLBACK_ON
    timeout: float | None = None  # total deadline, seconds
    idempotent: bool = False
    hedge_after: float | None = None  # seconds; hedging needs idempotent and a fallback
    hedge_p95: bool = False

    def matches(self, path: str, model: str | None) -> bool:
        if self.path is not None and self.path.fullmatch(path) is None:
            return False
        if self.model is not None:
            return model is not None and self.model.fullmatch(model) is not None
        return True


@dataclass(frozen=True)
class Snapshot:
    revision: str
    source: str
    digest: str
    loaded_at: float
    upstreams: Mapping[str, UpstreamSpec]
    routes: tuple[Route, ...]
    models: tuple[str, ...]
    warnings: tuple[str, ...] = field(default=())
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    authorizer: Authorizer = field(default_factory=lambda: Authorizer(None))
    tests: tuple[dict[str, Any], ...] = ()
    tool_request_mode: str = "remove"  # remove | deny: forbidden tools offered in a request
    guards: GuardSet = field(default_factory=GuardSet)
    limits: LimitSet = field(default_factory=LimitSet)
    policies: Mapping[str, UpstreamPolicy] = field(default_factory=dict)

    def route(self, path: str, model: str | None) -> Route | None:
        for route in self.routes:
            if route.matches(path, model):
                return route
        return None
