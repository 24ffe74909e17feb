"""How much of an upstream's answer the sidecar holds: per event, and in all.

A plain reply is held whole (guards and the tool gate read it), and a stream
holds the event still arriving; without bounds one upstream could grow the
sidecar's memory without end — a 200 MB event cost about 1 GB. Past a bound
the caller gets a provider-shaped error (an error event mid-stream).
"""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.errors import ErrorKind, SidecarError
from sidecar.upstream.base import UpstreamResponse

DEFAULT_MAX_EVENT_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ResponseBounds:
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES


class ResponseTooLarge(OSError):
    """The upstream's reply crossed a bound; it is not retried (it would again)."""


async def read_bounded(resp: UpstreamResponse, limit: int) -> bytes:
    """The whole body, refused as soon as it is known to exceed `limit` bytes."""
    declared = resp.headers.get("content-length", "")
    encoded = resp.headers.get("content-encoding", "identity").strip().lower() != "identity"
    if declared.isdigit() and int(declared) <= limit and not encoded:
        return await resp.read()  # framed by its length, not inflated: it cannot grow past it
    try:
        if declared.isdigit() and not encoded:
            raise ResponseTooLarge(f"answered {declared} bytes, over the {limit}-byte bound")
        pieces: list[bytes] = []
        size = 0
        async for piece in resp.chunks():
            size += len(piece)
            if size > limit:
                raise ResponseTooLarge(f"answered more than {limit} bytes, over the bound")
            pieces.append(piece)
    except BaseException:
        resp.close()
        raise
    resp.release()
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def oversize(upstream: str, what: str, limit: int) -> SidecarError:
    return SidecarError(
        ErrorKind.BAD_GATEWAY,
        f"upstream '{upstream}' sent {what} larger than {limit} bytes; the sidecar relays at "
        "most that (--max-event-bytes, --max-response-bytes)",
        code="upstream_response_too_large",
        retryable=False,
    )
