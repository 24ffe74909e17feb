"""The one interface the forward stage needs from any upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from multidict import CIMultiDict


class UpstreamResponse(Protocol):
    status: int
    headers: Mapping[str, str]

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    def close(self) -> None: ...


class Transport(Protocol):
    async def send(
        self, method: str, path: str, headers: CIMultiDict[str], body: bytes
    ) -> UpstreamResponse: ...

    async def close(self) -> None: ...
