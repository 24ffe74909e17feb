"""The one interface the forward stage needs from any upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from multidict import CIMultiDict


class UpstreamResponse(Protocol):
    status: int
    headers: Mapping[str, str]

    async def read(self) -> bytes:
        """The whole body; the connection goes back to the pool."""
        ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; call `release()` after the last chunk."""
        ...

    def release(self) -> None:
        """Body fully read: keep the connection for the next request."""
        ...

    def close(self) -> None:
        """Abandon the body: drop the connection."""
        ...


class Transport(Protocol):
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
    ) -> UpstreamResponse:
        """`query` is the caller's, without `?`; `deadline` is loop time; the timeouts,
        seconds (None: the transport's own)."""
        ...

    async def close(self) -> None: ...
