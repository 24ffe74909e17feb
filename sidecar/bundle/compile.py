"""Turn a validated bundle document into a `Snapshot`."""

from __future__ import annotations

import fnmatch
import os
import re
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from sidecar.authz.authorize import Authorizer
from sidecar.authz.policy import compile_policies
from sidecar.bundle.load import DEFAULT_LIMITS, RawBundle, ReadLimits, read_bundle
from sidecar.bundle.snapshot import Route, Snapshot, UpstreamSpec
from sidecar.bundle.validate import Problem, validate
from sidecar.call import Provider
from sidecar.guards.config import GuardSet, compile_guards
from sidecar.identity.resolve import compile_identity, compile_jwt
from sidecar.limits.rules import LimitSet, compile_limits
from sidecar.names import fold, glob
from sidecar.resilience.policy import DEFAULT_FALLBACK_ON, compile_upstream_policy
from sidecar.upstream.config import TransportConfig, compile_transport

DEFAULT_MOCK_MODELS = ("mock-echo",)


class BundleInvalid(Exception):
    """The bundle was read but is not valid; carries every problem found."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        super().__init__(f"{source}: {len(problems)} problem(s)")
        self.source = source
        self.problems = problems


def load_snapshot(source: str | os.PathLike[str], limits: ReadLimits = DEFAULT_LIMITS) -> Snapshot:
    """Read, validate and compile; raises BundleReadError or BundleInvalid."""
    return compile_bundle(read_bundle(source, limits))


def compile_bundle(raw: RawBundle) -> Snapshot:
    problems = validate(raw.document)
    compiled = None
    if isinstance(raw.document, dict) and not any(
        p.path.startswith(("roles", "policies")) for p in problems
    ):
        compiled, policy_problems = compile_policies(raw.document, raw.files)
        problems = sorted(set(problems + policy_problems))
    jwt = None
    if isinstance(raw.document, dict) and not any(p.path.startswith("identity") for p in problems):
        jwt, jwt_problems = compile_jwt(raw.document.get("identity"), raw.files)
        problems = sorted(set(problems + jwt_problems))
    guards = GuardSet()
    section = raw.document.get("guards") if isinstance(raw.document, dict) else None
    if section is None or isinstance(section, dict):
        # Guards the schema already refused are skipped, the others compiled, so a bad
        # pattern is reported together with an unrelated schema error, not after it.
        refused = {p.path for p in problems if p.path.startswith("guards")}
        salt, salt_problem = _salt((section or {}).get("salt"))
        guards, guard_problems = compile_guards(section, salt, refused)
        if salt_problem:
            guard_problems.append(Problem("guards.salt", salt_problem))
        problems = sorted(set(problems + guard_problems))
    limits = LimitSet()
    if isinstance(raw.document, dict) and not any(
        p.path.startswith(("limits", "pricing", "redis")) for p in problems
    ):
        limit_problems: list[Problem] = []
        limits = compile_limits(raw.document, _secret_value, limit_problems)
        problems = sorted(set(problems + limit_problems))
    warnings: list[str] = []
    transports: dict[str, TransportConfig] = {}
    if isinstance(raw.document, dict) and not any(p.path.startswith("upstreams") for p in problems):
        for name, cfg in (raw.document.get("upstreams") or {}).items():
            if "builtin" not in cfg:
                transports[name], found, said = compile_transport(name, cfg, os.environ)
                problems = sorted(set(problems + found))
                warnings += said
    if problems:
        raise BundleInvalid(raw.source, problems)
    doc: dict[str, Any] = raw.document
    if limits.redis is not None and limits.redis.problem:
        warnings.append(f"{limits.redis.problem}; Redis limits use their on_store_error")
    upstreams = {
        name: _upstream(name, cfg, warnings, transports.get(name))
        for name, cfg in (doc.get("upstreams") or {}).items()
    }
    routes = tuple(
        Route(
            name=route.get("name") or f"route-{i}",
            upstream=route["upstream"],
            path=_glob((route.get("match") or {}).get("path")),
            model=_name_glob((route.get("match") or {}).get("model")),
            path_glob=(route.get("match") or {}).get("path", "*"),
            model_glob=(route.get("match") or {}).get("model", "*"),
            model_rewrite=route.get("model"),
            fallbacks=tuple((f["upstream"], f.get("model")) for f in route.get("fallbacks") or ()),
            fallback_on=frozenset(route["fallback_on"])
            if "fallback_on" in route
            else DEFAULT_FALLBACK_ON,
            timeout=float(route["timeout_ms"]) / 1000.0 if "timeout_ms" in route else None,
            idempotent=bool(route.get("idempotent", False)),
            hedge_after=float((route.get("hedge") or {})["after_ms"]) / 1000.0
            if "after_ms" in (route.get("hedge") or {})
            else None,
            hedge_p95=(route.get("hedge") or {}).get("after") == "p95",
        )
        for i, route in enumerate(doc.get("routes") or [])
    )
    models: list[str] = []
    for spec in upstreams.values():
        for model in spec.models:
            if model not in models and any(
                r.upstream == spec.name and (r.model is None or r.model.fullmatch(fold(model)))
                for r in routes
            ):
                models.append(model)
    return Snapshot(
        revision=doc["revision"],
        source=raw.source,
        digest=raw.digest,
        loaded_at=time.time(),
        upstreams=MappingProxyType(upstreams),
        routes=routes,
        models=tuple(models),
        warnings=tuple(warnings),
        identity=compile_identity(doc.get("identity"), jwt),
        authorizer=Authorizer(compiled),
        tests=tuple(doc.get("tests") or ()),
        tool_request_mode=(doc.get("tool_policy") or {}).get("request", "remove"),
        guards=guards,
        limits=limits,
        policies=MappingProxyType(
            {
                name: compile_upstream_policy(cfg)
                for name, cfg in (doc.get("upstreams") or {}).items()
                if "builtin" not in cfg
            }
        ),
    )


# Drawn once per process: hashes of equal values match within one sidecar's life,
# and a value cannot be guessed back from a hash by anyone without the salt.
_PROCESS_SALT = os.urandom(16)


def _salt(ref: dict[str, str] | None) -> tuple[bytes, str | None]:
    if ref is None:
        return _PROCESS_SALT, None
    value, _ = _credential("guards.salt", ref)
    if value is None:
        where = f"environment variable {ref['env']}" if "env" in ref else f"file {ref.get('file')}"
        return (
            _PROCESS_SALT,
            f"the hash salt could not be read: {where} is unset, empty or unreadable",
        )
    return value.encode(), None


def _secret_value(where: str, ref: dict[str, str]) -> tuple[str | None, str | None]:
    """A setting read from the environment or a file; a missing one is a runtime problem."""
    if "env" in ref:
        value = os.environ.get(ref["env"], "").strip()
        return (
            (value, None)
            if value
            else (None, f"{where}: environment variable {ref['env']} is not set")
        )
    try:
        value = Path(ref["file"]).read_text("utf-8").strip()
    except OSError as exc:
        return None, f"{where}: cannot read {ref['file']}: {exc.strerror}"
    return (value, None) if value else (None, f"{where}: {ref['file']} is empty")


def _glob(pattern: str | None) -> re.Pattern[str] | None:
    if pattern is None or pattern == "*":
        return None
    return re.compile(fnmatch.translate(pattern), re.DOTALL)


def _name_glob(pattern: str | None) -> re.Pattern[str] | None:
    return None if pattern is None or pattern == "*" else glob(pattern)


def _upstream(
    name: str, cfg: dict[str, Any], warnings: list[str], transport: TransportConfig | None
) -> UpstreamSpec:
    if "builtin" in cfg:
        return UpstreamSpec(
            name=name,
            kind="mock",
            provider=None,
            models=tuple(cfg.get("models") or DEFAULT_MOCK_MODELS),
            chunk_delay=float(cfg.get("chunk_delay_ms", 0)) / 1000.0,
        )
    provider = Provider(cfg.get("provider", "openai"))
    # The base_url's own query (an Azure api-version) is sent by the transport, not
    # glued into the path prefix.
    base_url = cfg["base_url"].partition("?")[0].rstrip("/")
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    prefix = base_url.removesuffix("/v1")
    headers = list((cfg.get("headers") or {}).items())
    key, problem = _credential(name, cfg.get("api_key"))
    if problem:
        warnings.append(problem)
    if key is not None:
        if provider is Provider.ANTHROPIC:
            headers.append(("x-api-key", key))
        else:
            headers.append(("Authorization", f"Bearer {key}"))
    return UpstreamSpec(
        name=name,
        kind="http",
        provider=provider,
        base_url=base_url,
        origin=f"{parts.scheme}://{parts.hostname}:{port}",
        host=parts.hostname or "",
        port=port,
        prefix=prefix,
        headers=tuple(headers),
        credential_problem=problem,
        models=tuple(cfg.get("models") or ()),
        transport=transport or TransportConfig(),
    )


def _credential(name: str, ref: dict[str, str] | None) -> tuple[str | None, str | None]:
    """Resolve {env: NAME} / {file: PATH}; a missing credential is a warning, not an error.

    The default bundle names provider keys that a first-run user does not
    have; the sidecar must still start, and say clearly why a call to that
    upstream cannot be made.
    """
    if ref is None:
        return None, None
    if "env" in ref:
        value = os.environ.get(ref["env"], "").strip()
        if not value:
            return None, (
                f"upstream '{name}': environment variable {ref['env']} is not set "
                "in the sidecar, so no API key can be sent"
            )
        return value, None
    try:
        value = Path(ref["file"]).read_text("utf-8").strip()
    except OSError as exc:
        return None, f"upstream '{name}': cannot read API key file {ref['file']}: {exc.strerror}"
    if not value:
        return None, f"upstream '{name}': API key file {ref['file']} is empty"
    return value, None
