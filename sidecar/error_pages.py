"""An upstream's error that is not an API error: a load balancer's or a gateway's page.

An SDK reads an error body as the provider's JSON; handed an HTML page it
shows the raw markup, or nothing. The page's status stays, and its gist
(the title or first heading, else the text) becomes a message in the
caller's protocol that says who answered and how.
"""

from __future__ import annotations

import html
import re

import orjson

from sidecar.errors import ErrorKind, SidecarError

MAX_GIST = 200  # characters of the page quoted in the message

_TITLE = re.compile(rb"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
_HEADING = re.compile(rb"<h[1-3][^>]*>(.*?)</h[1-3]\s*>", re.IGNORECASE | re.DOTALL)
_SKIPPED = re.compile(rb"<(script|style)[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(rb"<[^>]*>")
_SPACE = re.compile(r"\s+")

_KINDS = {
    400: ErrorKind.INVALID_REQUEST,
    401: ErrorKind.UNAUTHENTICATED,
    403: ErrorKind.FORBIDDEN,
    404: ErrorKind.NOT_FOUND,
    405: ErrorKind.METHOD_NOT_ALLOWED,
    408: ErrorKind.TIMEOUT,
    413: ErrorKind.TOO_LARGE,
    429: ErrorKind.RATE_LIMITED,
    503: ErrorKind.UNAVAILABLE,
    504: ErrorKind.TIMEOUT,
}


def is_api_error(content_type: str, body: bytes) -> bool:
    """JSON (or a stream) is the provider's own answer and passes unchanged, also when
    a server labels its JSON error as text."""
    ctype = content_type.lower()
    if "json" in ctype or ctype.startswith("text/event-stream"):
        return True
    if body.lstrip()[:1] != b"{":
        return False
    try:
        return isinstance(orjson.loads(body), dict)
    except orjson.JSONDecodeError:
        return False


def page_error(upstream: str, status: int, content_type: str, body: bytes) -> SidecarError:
    kind = _KINDS.get(status, ErrorKind.BAD_GATEWAY if status >= 500 else ErrorKind.INVALID_REQUEST)
    what = content_type.split(";", 1)[0].strip() or "no content type"
    gist = _gist(body)
    said = f": {gist!r}" if gist else " and an empty body"
    return SidecarError(
        kind,
        f"upstream '{upstream}' answered {status} with a {what} page instead of an API "
        f"error{said} (often a proxy, gateway or load balancer in front of the provider)",
        code="upstream_error_page",
    )


def _gist(body: bytes) -> str:
    head = body[:65536]
    found = _TITLE.search(head) or _HEADING.search(head)
    raw = found.group(1) if found else _TAG.sub(b" ", _SKIPPED.sub(b" ", head))
    text = _SPACE.sub(" ", html.unescape(raw.decode("utf-8", "replace"))).strip()
    return text if len(text) <= MAX_GIST else text[: MAX_GIST - 1] + "…"
