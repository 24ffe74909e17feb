"""Settings come from flags, then SIDECAR_* environment variables, then defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sidecar.bounds import DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_RESPONSE_BYTES
from sidecar.bundle.load import DEFAULT_LIMITS, DEPTH_CEILING, ReadLimits
from sidecar.telemetry.setup import EXPORTERS, Exporter

DEFAULT_HTTP = "127.0.0.1:8700"
DEFAULT_ADMIN = "127.0.0.1:8702"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_DRAIN_DELAY_S = 5.0
DEFAULT_SHUTDOWN_GRACE_S = 30.0
DEFAULT_BODY_TIMEOUT_MS = 60_000
DEFAULT_BODY_MIN_RATE = 16 * 1024  # bytes a second
DEFAULT_MAX_CONNECTIONS = 1024


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(value: str, what: str) -> Listen:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SettingsError(f"{what}: expected HOST:PORT, got {value!r}")
    host = host.strip("[]") or "127.0.0.1"
    return Listen(host, int(port))


@dataclass(frozen=True)
class Resources:
    """What one caller may hold of the sidecar: time, connections, memory."""

    body_timeout_ms: int = DEFAULT_BODY_TIMEOUT_MS
    body_min_rate: int = DEFAULT_BODY_MIN_RATE
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_buffered_bytes: int | None = None  # None: four times --max-body-bytes
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    @classmethod
    def resolve(cls, flags: Mapping[str, int | None] | None = None) -> Resources:
        """Each field from its flag, else SIDECAR_<FIELD>, else its default."""
        flags = flags or {}
        values: dict[str, int | None] = {}
        for name in cls.__dataclass_fields__:
            value = flags.get(name)
            if value is None:
                env_name = f"SIDECAR_{name.upper()}"
                raw = os.environ.get(env_name, "").strip()
                if raw:
                    if not raw.isdigit():
                        raise SettingsError(f"{env_name}: expected a whole number, got {raw!r}")
                    value = int(raw)
            if value is not None:
                if value <= 0:
                    raise SettingsError(f"{name.replace('_', '-')} must be positive, got {value}")
                values[name] = value
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Settings:
    bundle: Path | None  # None: the embedded default bundle
    http: Listen
    admin: Listen
    max_body_bytes: int
    otel_exporter: Exporter
    log_level: str
    agent: str = "agent"
    tenant: str = "default"
    decision_log: str = "stdout"  # stdout | stderr | none | a file path
    decision_log_content: bool = False
    drain_delay: float = DEFAULT_DRAIN_DELAY_S  # SIGTERM -> not ready, still accepting
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE_S  # then: calls in flight get this long
    # /healthz and /readyz alone, for kubelet probes on the pod IP while the admin
    # listener (bundle status, metrics) stays on loopback. None: no such listener.
    probes: Listen | None = None
    bundle_limits: ReadLimits = DEFAULT_LIMITS  # size, file count and depth a bundle may have
    resources: Resources = Resources()

    @classmethod
    def resolve(
        cls,
        *,
        bundle: str | None = None,
        http: str | None = None,
        admin: str | None = None,
        probes: str | None = None,
        max_body_bytes: int | None = None,
        otel_exporter: str | None = None,
        log_level: str | None = None,
        agent: str | None = None,
        tenant: str | None = None,
        decision_log: str | None = None,
        decision_log_content: bool | None = None,
        resources: Mapping[str, int | None] | None = None,
    ) -> Settings:
        env = os.environ
        bundle = bundle or env.get("SIDECAR_BUNDLE") or None
        exporter = (otel_exporter or env.get("SIDECAR_OTEL_EXPORTER") or "none").lower()
        if exporter not in EXPORTERS:
            raise SettingsError(
                f"SIDECAR_OTEL_EXPORTER: expected one of {', '.join(EXPORTERS)}, got {exporter!r}"
            )
        if max_body_bytes is None:
            raw = env.get("SIDECAR_MAX_BODY_BYTES", "")
            if raw:
                if not raw.isdigit():
                    raise SettingsError(f"SIDECAR_MAX_BODY_BYTES: expected bytes, got {raw!r}")
                max_body_bytes = int(raw)
            else:
                max_body_bytes = DEFAULT_MAX_BODY_BYTES
        if max_body_bytes <= 0:
            raise SettingsError("max body bytes must be positive")
        bounds = Resources.resolve(resources)
        if bounds.max_buffered_bytes is not None and bounds.max_buffered_bytes < max_body_bytes:
            raise SettingsError(
                f"max buffered bytes ({bounds.max_buffered_bytes}) is below max body bytes "
                f"({max_body_bytes}): a body at the limit could never be accepted"
            )
        return cls(
            bundle=Path(bundle) if bundle else None,
            http=parse_listen(http or env.get("SIDECAR_HTTP") or DEFAULT_HTTP, "http"),
            admin=parse_listen(admin or env.get("SIDECAR_ADMIN") or DEFAULT_ADMIN, "admin"),
            probes=_optional_listen(probes or env.get("SIDECAR_PROBES") or "", "probes"),
            max_body_bytes=max_body_bytes,
            otel_exporter=exporter,
            log_level=(log_level or env.get("SIDECAR_LOG_LEVEL") or "info").upper(),
            agent=agent or env.get("SIDECAR_AGENT") or "agent",
            tenant=tenant or env.get("SIDECAR_TENANT") or "default",
            decision_log=decision_log or env.get("SIDECAR_DECISION_LOG") or "stdout",
            decision_log_content=decision_log_content
            if decision_log_content is not None
            else _flag(env.get("SIDECAR_DECISION_LOG_CONTENT", "")),
            drain_delay=_ms(env, "SIDECAR_DRAIN_DELAY_MS", DEFAULT_DRAIN_DELAY_S),
            shutdown_grace=_ms(env, "SIDECAR_SHUTDOWN_GRACE_MS", DEFAULT_SHUTDOWN_GRACE_S),
            bundle_limits=bundle_limits(env),
            resources=bounds,
        )


def bundle_limits(env: Mapping[str, str]) -> ReadLimits:
    """SIDECAR_BUNDLE_MAX_BYTES / _MAX_FILES / _MAX_DEPTH, for `run`, `check` and `test` alike."""
    return ReadLimits(
        max_bytes=_positive(env, "SIDECAR_BUNDLE_MAX_BYTES", DEFAULT_LIMITS.max_bytes),
        max_files=_positive(env, "SIDECAR_BUNDLE_MAX_FILES", DEFAULT_LIMITS.max_files),
        max_depth=_positive(
            env, "SIDECAR_BUNDLE_MAX_DEPTH", DEFAULT_LIMITS.max_depth, ceiling=DEPTH_CEILING
        ),
    )


def _positive(env: Mapping[str, str], name: str, default: int, ceiling: int | None = None) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) == 0:
        raise SettingsError(f"{name}: expected a positive whole number, got {raw!r}")
    if ceiling is not None and int(raw) > ceiling:
        raise SettingsError(f"{name}: at most {ceiling}, got {raw}")
    return int(raw)


def _optional_listen(value: str, what: str) -> Listen | None:
    if value.strip().lower() in ("", "off", "none"):
        return None
    return parse_listen(value.strip(), what)


def _ms(env: os._Environ[str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise SettingsError(f"{name}: expected milliseconds, got {raw!r}")
    return int(raw) / 1000.0


def _flag(value: str) -> bool:
    if value.lower() in ("", "0", "false", "no", "off"):
        return False
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"SIDECAR_DECISION_LOG_CONTENT: expected true or false, got {value!r}")
