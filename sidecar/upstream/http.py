"""Forward to a provider over HTTP with one pooled client session per upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import aiohttp
from multidict import CIMultiDict

from sidecar.bundle.snapshot import UpstreamSpec

# Until per-route deadlines exist, a connect that takes this long is a dead host,
# and a silence this long between bytes is a stuck provider (long reasoning
# models can think for minutes before their first byte).
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 600.0


class HttpResponse:
    __slots__ = ("_resp", "headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        finally:
            self._resp.release()

    def chunks(self) -> AsyncIterator[bytes]:
        return self._resp.content.iter_any()

    def release(self) -> None:
        self._resp.release()

    def close(self) -> None:
        self._resp.close()


class HttpTransport:
    def __init__(self, spec: UpstreamSpec, connection_limit: int = 512) -> None:
        self.spec = spec
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connection_limit, ttl_dns_cache=60),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S
            ),
            auto_decompress=True,
            # The proxy decides every header it sends; no cookies carried between agents' calls.
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def send(
        self, method: str, path: str, headers: CIMultiDict[str], body: bytes
    ) -> HttpResponse:
        resp = await self._session.request(
            method,
            self.spec.url_for(path),
            headers=headers,
            data=body or None,
            allow_redirects=False,
        )
        return HttpResponse(resp)

    async def close(self) -> None:
        await self._session.close()
