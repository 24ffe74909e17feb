"""An upstream failure in the caller's terms: which error, and whether it may be retried."""

from __future__ import annotations

from sidecar.bounds import ResponseTooLarge
from sidecar.bundle.snapshot import UpstreamSpec
from sidecar.errors import ErrorKind, SidecarError
from sidecar.upstream.h1_errors import (
    ConnectError,
    DeadlineExceeded,
    FirstByteTimeout,
    PoolExhausted,
)


def failure_reason(exc: BaseException) -> str:
    """The retry policy's name for a failed attempt (and the retries metric's label)."""
    if isinstance(exc, ResponseTooLarge):
        return "too_large"  # not retried: the upstream would answer the same
    if isinstance(exc, ConnectError):
        return "connect"
    if isinstance(exc, FirstByteTimeout):
        return "timeout"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "reset"


def upstream_failure(
    spec: UpstreamSpec | None, exc: BaseException, *, midstream: bool = False
) -> SidecarError:
    name = spec.name if spec else "?"
    where = "while streaming the response" if midstream else ""
    if isinstance(exc, DeadlineExceeded):
        return SidecarError(
            ErrorKind.TIMEOUT,
            f"the call's deadline passed {where or 'before an upstream answered'}",
            code="deadline_exceeded",
        )
    if isinstance(exc, PoolExhausted):
        return SidecarError(
            ErrorKind.UNAVAILABLE,
            f"upstream '{name}' is busy in this sidecar: {exc}",
            code="upstream_connections_busy",
            retry_after=1.0,
        )
    if isinstance(exc, TimeoutError):
        return SidecarError(
            ErrorKind.TIMEOUT,
            f"upstream '{name}' timed out {where}".rstrip(),
            code="upstream_timeout",
        )
    if isinstance(exc, ResponseTooLarge):
        return SidecarError(
            ErrorKind.BAD_GATEWAY,
            f"upstream '{name}' {exc} (--max-response-bytes)",
            code="upstream_response_too_large",
            retryable=False,
        )
    if isinstance(exc, OSError):
        detail = str(exc) or type(exc).__name__
        return SidecarError(
            ErrorKind.BAD_GATEWAY,
            f"upstream '{name}' failed{' ' + where if where else ''}: {detail}",
            code="upstream_unreachable" if not midstream else "upstream_stream_broken",
        )
    if isinstance(exc, SidecarError):
        return exc
    raise exc
