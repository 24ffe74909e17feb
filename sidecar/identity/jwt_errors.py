"""How a rejected token is reported, the same wherever the check fails.

Every failure is a 401 with a code the client can act on (`token_expired`,
`unknown_key`, ...) and a message that quotes attacker-controlled values only
clipped, so a crafted token can grow neither the error body nor the log line.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NoReturn

from sidecar.errors import ErrorKind, SidecarError


def _fail(message: str, code: str = "invalid_token") -> NoReturn:
    raise SidecarError(ErrorKind.UNAUTHENTICATED, message, code=code)


def _clip(value: object, limit: int = 80) -> str:
    """Quote an attacker-controlled value for a message without letting it grow the message."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return repr(text)


def _iso(ts: Any) -> str:
    try:
        return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError, OverflowError, OSError):
        return _clip(ts)
