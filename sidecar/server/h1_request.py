"""What a handler of the proxy listener receives, and what it must return.

The surfaces (`server/http.py`, `server/admin.py`) and the connection that
parses requests meet on these types; keeping them apart from the connection
lets a handler be read, typed and tested without the parser.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from multidict import CIMultiDictProxy

from sidecar.replies import Reply, StreamReply


class Request:
    """One parsed request; `body` is complete unless `too_large`."""

    __slots__ = (
        "body",
        "headers",
        "keep_alive",
        "length",
        "method",
        "path",
        "query",
        "refused",
        "too_large",
        "version",
    )

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        headers: CIMultiDictProxy[str],
        version: str,
        keep_alive: bool,
        length: int | None,
    ) -> None:
        self.method = method
        self.version = version
        self.path = path
        self.query = query
        self.headers = headers
        self.keep_alive = keep_alive
        self.length = length  # the declared Content-Length, if any
        self.body = b""
        self.too_large = False
        # Answered by the server itself, unread: (status, message) — too slow, too much held.
        self.refused: tuple[int, str] | None = None


Handler = Callable[[Request], Awaitable[Reply | StreamReply]]
# Answers for requests the server refuses before any handler: (status, message, request).
ErrorReply = Callable[[int, str, Request | None], Reply]
