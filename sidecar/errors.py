"""Errors any stage can raise; adapters render them in the caller's protocol.

A stage says *what* went wrong (a kind, a message, maybe a retry hint); the
adapter for the surface decides how an OpenAI, Anthropic or MCP client must
see it, so the agent's own SDK raises its usual exception with our message.
"""

from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    INVALID_REQUEST = "invalid_request"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    TOO_LARGE = "too_large"
    HEADERS_TOO_LARGE = "headers_too_large"
    RATE_LIMITED = "rate_limited"
    INTERNAL = "internal"
    # The sidecar's own configuration cannot serve the call (a provider key it was not
    # given): not the upstream's fault, not the caller's, and no retry will help.
    MISCONFIGURED = "misconfigured"
    BAD_GATEWAY = "bad_gateway"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"


STATUS: dict[ErrorKind, int] = {
    ErrorKind.INVALID_REQUEST: 400,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.METHOD_NOT_ALLOWED: 405,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.HEADERS_TOO_LARGE: 431,
    ErrorKind.RATE_LIMITED: 429,
    ErrorKind.INTERNAL: 500,
    ErrorKind.MISCONFIGURED: 500,
    ErrorKind.BAD_GATEWAY: 502,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.TIMEOUT: 504,
}


class SidecarError(Exception):
    """A failure the caller should see as a provider-shaped error response."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.code = code
        self.param = param
        self.retry_after = retry_after
        # None lets the SDK apply its own policy; False sends `x-should-retry: false`.
        self.retryable = retryable

    @property
    def status(self) -> int:
        return STATUS[self.kind]
