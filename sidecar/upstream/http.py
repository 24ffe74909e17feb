"""Forward to a provider over HTTP, with one connection pool per upstream."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote_plus, urlsplit

from multidict import CIMultiDict

from sidecar.bundle.snapshot import UpstreamSpec
from sidecar.upstream.h1 import Pool, Response

# Defaults when a call passes no timeouts of its own (the bundle's `timeouts` do): a
# connect that takes this long is a dead host, and a silence this long between bytes
# is a stuck provider (long reasoning models can think for minutes before answering).
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 600.0

HttpResponse = Response


class HttpTransport:
    def __init__(self, spec: UpstreamSpec) -> None:
        self.spec = spec
        config = spec.transport
        parts = urlsplit(spec.prefix)
        tls = parts.scheme == "https"
        self._prefix = parts.path.rstrip("/")
        self._query = config.query
        self._query_names = frozenset(k for k, _ in parse_qsl(config.query, keep_blank_values=True))
        self._pool = Pool(
            parts.hostname or spec.host,
            parts.port or (443 if tls else 80),
            tls=tls,
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S,
            ssl_context=config.ssl_context,
            max_connections=config.max_connections,
            proxy=config.proxy,
        )

    def target(self, path: str, query: str) -> str:
        """The request target: the base_url's path and query, then the caller's.

        A parameter the base_url fixes (an Azure `api-version`) is not taken
        from the caller a second time.
        """
        fixed = self._query
        if query and fixed:
            names = self._query_names
            kept = [
                pair
                for pair in query.split("&")
                if pair and unquote_plus(pair.partition("=")[0]) not in names
            ]
            query = "&".join([fixed, *kept])
        elif fixed:
            query = fixed
        return f"{self._prefix}{path}?{query}" if query else self._prefix + path

    async def send(
        self,
        method: str,
        path: str,
        headers: CIMultiDict[str],
        body: bytes,
        *,
        query: str = "",
        connect_timeout: float | None = None,
        first_byte_timeout: float | None = None,
        idle_timeout: float | None = None,
        deadline: float | None = None,
    ) -> HttpResponse:
        return await self._pool.request(
            method,
            self.target(path, query) if query or self._query else self._prefix + path,
            headers,
            body,
            connect_timeout=connect_timeout,
            first_byte_timeout=first_byte_timeout,
            idle_timeout=idle_timeout,
            deadline=deadline,
        )

    @property
    def closed(self) -> bool:
        return self._pool.closed

    async def close(self) -> None:
        self._pool.close()
