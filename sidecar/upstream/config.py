"""How one HTTP upstream is reached, decided once per bundle load.

The network path (a proxy from the bundle or the environment, a private CA,
a client certificate), the connection cap and which of the agent's headers
may travel on are all fixed here, so a request only looks them up. TLS files
are read and checked at load: a bundle naming a CA that cannot be read is
refused like any other bad field, and never replaces a good one.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sidecar.bundle.validate import Problem
from sidecar.upstream.proxy import Proxy, env_proxy_url, parse_proxy_url

DEFAULT_MAX_CONNECTIONS = 256

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Never sent upstream, whatever a bundle lists: the agent's credentials, framing the
# client recomputes, and the trace context the sidecar re-injects as its own child.
NEVER_FORWARDED = HOP_BY_HOP | {
    "host",
    "content-length",
    "authorization",
    "x-api-key",
    "api-key",
    "cookie",
    "accept-encoding",
    "expect",
    "traceparent",
    "tracestate",
}
# The agent's headers that reach an upstream by default: what the SDKs need the
# provider to see (content negotiation, API version and beta flags, idempotency,
# their own client telemetry). Headers that pick an account, project or billing
# target of the operator's key (OpenAI-Organization, OpenAI-Project,
# x-goog-api-key, x-goog-user-project, ...) are not here: an upstream must list them.
DEFAULT_FORWARD_HEADERS = frozenset(
    {
        "accept",
        "content-type",
        "user-agent",
        "openai-beta",
        "anthropic-version",
        "anthropic-beta",
        "idempotency-key",
        "x-client-request-id",
    }
)
DEFAULT_FORWARD_PREFIXES = ("x-stainless-",)


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Compared by value, so an unchanged upstream keeps its pool across reloads."""

    query: str = ""  # the base_url's own query, sent on every request
    forward_headers: frozenset[str] = DEFAULT_FORWARD_HEADERS
    forward_prefixes: tuple[str, ...] = DEFAULT_FORWARD_PREFIXES
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    proxy: Proxy | None = None
    tls_digest: str = ""  # of the CA, certificate and key files: a rotated file is a change
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)


def compile_transport(
    name: str, cfg: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[TransportConfig, list[Problem], list[str]]:
    """The upstream's transport, the problems that refuse the bundle, and warnings."""
    where = f"upstreams.{name}"
    problems: list[Problem] = []
    warnings: list[str] = []
    parts = urlsplit(cfg["base_url"])
    scheme = parts.scheme.lower()
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        port = 0  # the schema's problem, reported there
    allowed, prefixes = _forwarding(where, cfg.get("forward_headers") or (), problems)
    setting = cfg.get("proxy")
    proxy = None  # `proxy: false`: direct, whatever the environment says
    if isinstance(setting, str):
        proxy = _bundle_proxy(where, setting, problems)
    elif setting is None:
        proxy = _env_proxy(name, scheme, parts.hostname or "", port, environ, warnings)
    context, digest = None, ""
    tls_fields = [f for f in ("ca_file", "client_cert", "client_key") if cfg.get(f)]
    if tls_fields and scheme != "https":
        problems.extend(
            Problem(f"{where}.{f}", "applies to https:// upstreams only") for f in tls_fields
        )
    elif tls_fields:
        if cfg.get("client_key") and not cfg.get("client_cert"):
            problems.append(Problem(f"{where}.client_key", "needs client_cert beside it"))
        else:
            context, digest = _tls(where, cfg, problems)
    config = TransportConfig(
        query=parts.query,
        forward_headers=allowed,
        forward_prefixes=prefixes,
        max_connections=int(cfg.get("max_connections", DEFAULT_MAX_CONNECTIONS)),
        proxy=proxy,
        tls_digest=digest,
        ssl_context=context,
    )
    return config, problems, warnings


def _forwarding(
    where: str, listed: Any, problems: list[Problem]
) -> tuple[frozenset[str], tuple[str, ...]]:
    """The default allow-list plus the upstream's names and `prefix*` patterns."""
    allowed = set(DEFAULT_FORWARD_HEADERS)
    prefixes = list(DEFAULT_FORWARD_PREFIXES)
    for i, name in enumerate(listed):
        low = str(name).lower()
        stem = low.removesuffix("*")
        wildcard = low.endswith("*")
        if (
            low in NEVER_FORWARDED
            or stem.startswith("x-sidecar-")
            or not stem
            or (wildcard and _covers_refused(stem))
        ):
            problems.append(
                Problem(
                    f"{where}.forward_headers[{i}]",
                    f"'{name}' is never forwarded: the agent's credentials, hop-by-hop "
                    "headers and the sidecar's own headers stay at this hop",
                )
            )
        elif wildcard:
            prefixes.append(stem)
        else:
            allowed.add(low)
    return frozenset(allowed), tuple(prefixes)


def _bundle_proxy(where: str, url: str, problems: list[Problem]) -> Proxy | None:
    try:
        return parse_proxy_url(url)
    except ValueError as exc:
        problems.append(Problem(f"{where}.proxy", str(exc)))
        return None


def _env_proxy(
    name: str,
    scheme: str,
    host: str,
    port: int,
    environ: Mapping[str, str],
    warnings: list[str],
) -> Proxy | None:
    """The environment's proxy for this origin; one the sidecar cannot speak is a warning."""
    url = env_proxy_url(scheme, host, port, environ) if host else None
    if url is None:
        return None
    try:
        return parse_proxy_url(url)
    except ValueError as exc:
        var = "HTTPS_PROXY" if scheme == "https" else "HTTP_PROXY"
        warnings.append(
            f"upstream '{name}': the {var} environment variable is ignored ({exc}); "
            "calls connect directly"
        )
        return None


def _covers_refused(prefix: str) -> bool:
    """A wildcard must not reach a header that is never forwarded (`x-*` covers x-api-key)."""
    return "x-sidecar-".startswith(prefix) or any(n.startswith(prefix) for n in NEVER_FORWARDED)


def _tls(
    where: str, cfg: Mapping[str, Any], problems: list[Problem]
) -> tuple[ssl.SSLContext | None, str]:
    digest = hashlib.sha256()
    for key in ("ca_file", "client_cert", "client_key"):
        path = cfg.get(key)
        if not path:
            continue
        try:
            with open(path, "rb") as f:
                digest.update(f.read())
        except OSError as exc:
            problems.append(Problem(f"{where}.{key}", f"cannot read {path}: {exc.strerror}"))
    if problems:
        return None, ""
    ca_file = cfg.get("ca_file")
    try:
        # A CA file replaces the system's roots: this upstream is trusted only as signed by it.
        context = ssl.create_default_context(cafile=ca_file)
    except (ssl.SSLError, ValueError, OSError) as exc:
        problems.append(Problem(f"{where}.ca_file", f"not a PEM CA certificate: {exc}"))
        return None, ""
    cert = cfg.get("client_cert")
    if cert:
        try:
            # A key with a passphrase would make OpenSSL prompt on the terminal: refuse it.
            context.load_cert_chain(cert, cfg.get("client_key"), password=_no_passphrase)
        except (ssl.SSLError, ValueError, OSError) as exc:
            problems.append(
                Problem(
                    f"{where}.client_cert",
                    "the certificate and key do not load (PEM, unencrypted key, key matching "
                    f"the certificate): {exc}",
                )
            )
            return None, ""
    return context, digest.hexdigest()


def _no_passphrase() -> bytes:
    raise ValueError("the key is encrypted; give an unencrypted key file")
