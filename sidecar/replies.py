"""What a handler hands the HTTP server to write: a whole reply, or one that streams.

Kept apart from the pipeline so the server depends on these two shapes only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from multidict import CIMultiDict


@dataclass
class Reply:
    status: int
    headers: CIMultiDict[str]
    body: bytes


@dataclass
class StreamReply:
    """Headers now, body as it arrives.

    The server iterates `chunks` to the end or `aclose()`s it, then calls
    `done` — also when the caller went away before the first chunk — so
    whatever the stream holds (a bundle generation) is let go exactly once.
    A generator that never started runs no `finally` when closed, so cleanup
    that must happen either way belongs in `done`. `farewell` gives the bytes
    that end the stream when the server must cut it (at the end of the shutdown
    grace): an error event in the caller's protocol.
    """

    status: int
    headers: CIMultiDict[str]
    chunks: AsyncIterator[bytes]
    done: Callable[[], None] | None = None
    farewell: Callable[[], bytes] | None = None
