"""Reaching an upstream through an HTTP forward proxy.

Networks that only let traffic out through a proxy name it the way curl and
every HTTP library read it: `HTTPS_PROXY` / `https_proxy` for https origins,
`HTTP_PROXY` / `http_proxy` for http ones, and `NO_PROXY` / `no_proxy` for
the hosts that are reached directly. The environment is read when a bundle
is loaded, never per request. An https origin is reached through a CONNECT
tunnel, so TLS runs end to end and the proxy sees only the host name; an
http origin is sent its requests in absolute form.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import unquote, urlsplit

MAX_CONNECT_HEAD = 16 * 1024  # a proxy's answer to CONNECT


class ProxyRefused(OSError):
    """The proxy answered CONNECT with something other than 2xx."""


@dataclass(frozen=True, slots=True)
class Proxy:
    host: str
    port: int
    # "Basic ..." when the proxy URL carries user:password; kept out of repr and logs.
    authorization: str | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_proxy_url(url: str) -> Proxy:
    """`http://[user:password@]host[:port]`; a bare `host:port` means http.

    Raises ValueError naming what is wrong: only plain-http proxies are spoken
    (TLS to the origin still runs end to end through the tunnel).
    """
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme.lower() != "http":
        raise ValueError(f"proxy scheme {parts.scheme!r} is not supported; use http://")
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError("proxy port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError("proxy URL names no host")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError("a proxy URL is scheme, host and port only")
    auth = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return Proxy(parts.hostname, port, auth)


def env_proxy_url(scheme: str, host: str, port: int, environ: Mapping[str, str]) -> str | None:
    """The proxy URL the environment gives an origin, or None: connect directly."""
    names = ("https_proxy", "HTTPS_PROXY") if scheme == "https" else ("http_proxy", "HTTP_PROXY")
    url = next((environ[n].strip() for n in names if environ.get(n, "").strip()), None)
    if url is None:
        return None
    no_proxy = environ.get("no_proxy", "").strip() or environ.get("NO_PROXY", "").strip()
    if no_proxy and bypasses(no_proxy, host, port):
        return None
    return url


def bypasses(no_proxy: str, host: str, port: int) -> bool:
    """Whether `NO_PROXY` sends `host:port` direct.

    Entries, separated by commas or spaces: `*` (everything), a domain that
    matches itself and its subdomains (`example.com`, `.example.com`,
    `*.example.com`), an IP address, a CIDR block (`10.0.0.0/8`), each
    optionally with `:port`.
    """
    host = host.lower().strip("[]").rstrip(".")
    address = _ip(host)
    for raw in no_proxy.replace(" ", ",").split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        entry, entry_port = _split_port(entry)
        if entry_port is not None and entry_port != port:
            continue
        if "/" in entry:
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                continue
            if address is not None and address in network:
                return True
            continue
        literal = _ip(entry)
        if literal is not None:
            if address == literal:
                return True
            continue
        domain = entry.removeprefix("*").lstrip(".").rstrip(".")
        if domain and (host == domain or host.endswith("." + domain)):
            return True
    return False


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def _split_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [v6]:port
        inside, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return inside, int(port) if port.isdigit() else None
    if entry.count(":") == 1:  # host:port (a bare v6 address has more colons)
        name, _, port = entry.partition(":")
        return name, int(port) if port.isdigit() else None
    return entry, None


def connect_request(proxy: Proxy, host_header: str) -> bytes:
    auth = f"Proxy-Authorization: {proxy.authorization}\r\n" if proxy.authorization else ""
    return f"CONNECT {host_header} HTTP/1.1\r\nHost: {host_header}\r\n{auth}\r\n".encode("latin-1")


class Tunnel(asyncio.Protocol):
    """Sends CONNECT and waits for the proxy's head; the socket is then TLS's."""

    def __init__(self, loop: asyncio.AbstractEventLoop, request: bytes, target: str) -> None:
        self._request = request
        self._target = target
        self._head = bytearray()
        self.established: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        if self.established.done():
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_CONNECT_HEAD:
                self._fail(ProxyRefused("the proxy's answer to CONNECT has no end"))
            return
        line = bytes(self._head[: self._head.find(b"\r\n")]).decode("latin-1")
        parts = line.split(" ", 2)
        status = parts[1] if len(parts) > 1 else ""
        if not (line.startswith("HTTP/1.") and status.isdigit() and status.startswith("2")):
            self._fail(ProxyRefused(f"the proxy refused CONNECT to {self._target}: {line[:200]}"))
            return
        if end + 4 != len(self._head):
            # Bytes from the origin before our TLS hello: not a tunnel we can trust.
            self._fail(ProxyRefused("the proxy sent data before the tunnel was used"))
            return
        self.established.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.established.done():
            detail = f": {exc}" if exc else ""
            self.established.set_exception(
                ProxyRefused(f"the proxy closed the connection before the tunnel opened{detail}")
            )

    def _fail(self, exc: BaseException) -> None:
        if not self.established.done():
            self.established.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()
