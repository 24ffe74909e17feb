"""The listener's bytes on the wire, as pure functions: reply heads and request targets.

Sans-IO on purpose: building a status line, a header block that cannot be
smuggled into, or a decoded path is a matter of bytes in and bytes out, so
each edge case is a unit test away and the connection stays about sockets.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import unquote

import httptools
from multidict import CIMultiDict

_FRAMING = ("content-length", "transfer-encoding", "connection")
_STATUS_LINES: dict[int, bytes] = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus
}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        # A status the stdlib does not name, such as Anthropic's 529 "overloaded".
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} Status {status}\r\n".encode()
    return line


class _Clock:
    """The Date header, formatted once a second rather than once a response."""

    __slots__ = ("_line", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def line(self) -> bytes:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._line = f"date: {formatdate(now, usegmt=True)}\r\n".encode()
        return self._line


_CLOCK = _Clock()


class HeaderError(ValueError):
    """A reply header that would break the response's framing (CR or LF inside)."""


def _head(status: int, headers: CIMultiDict[str], framing: str) -> bytes:
    if "content-length" in headers or "transfer-encoding" in headers or "connection" in headers:
        headers = headers.copy()
        for name in _FRAMING:
            headers.popall(name, None)
    lines = [f"{name}: {value}" for name, value in headers.items()]
    text = "\r\n".join(lines)
    if text.count("\n") != max(len(lines) - 1, 0) or text.count("\r") != text.count("\n"):
        raise HeaderError("a reply header contains CR or LF")
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        # Only the headers latin-1 cannot carry go out as UTF-8; the others keep their bytes.
        raw = b"\r\n".join(_encode_line(line) for line in lines)
    return b"".join(
        (_status_line(status), raw, b"\r\n" if lines else b"", _CLOCK.line(), framing.encode())
    )


def _encode_line(line: str) -> bytes:
    try:
        return line.encode("latin-1")
    except UnicodeEncodeError:
        return line.encode("utf-8")


def _split_target(url: bytes) -> tuple[str, str]:
    """Path (percent-decoded) and query of a request target, origin or absolute form."""
    if url[:1] != b"/":
        try:
            parsed = httptools.parse_url(url)
        except httptools.HttpParserInvalidURLError:
            return "", ""
        raw_path = (parsed.path or b"/").decode("latin-1")
        query = (parsed.query or b"").decode("latin-1")
    else:
        text = url.decode("latin-1")
        raw_path, _, query = text.partition("?")
        raw_path = raw_path.partition("#")[0]
    if "%" in raw_path:
        raw_path = unquote(raw_path, errors="replace")
    return raw_path, query


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__
