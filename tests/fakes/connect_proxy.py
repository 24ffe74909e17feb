"""A real HTTP forward proxy on loopback: CONNECT tunnels and absolute-form requests.

It is what a corporate egress proxy does, small enough to read: for
``CONNECT host:port`` it answers ``200`` and splices the two sockets (TLS stays end
to end), for a request whose target is ``http://host:port/...`` it opens that
origin and relays the connection. Names are resolved through ``hosts`` first, so a
test can use an upstream name that only the proxy knows (``upstream.test``): a call
that arrives proves it went through the proxy.

Recorded: ``connects`` (CONNECT targets), ``forwards`` (absolute request lines),
``authorizations`` (the ``Proxy-Authorization`` of each, or None), ``tunnels_open``.
``require_auth`` (a full header value) makes it answer ``407`` to anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

__all__ = ["ConnectProxy"]


class ConnectProxy:
    def __init__(
        self, *, hosts: dict[str, str] | None = None, require_auth: str | None = None
    ) -> None:
        self.hosts = dict(hosts or {})
        self.require_auth = require_auth
        self.connects: list[str] = []
        self.forwards: list[str] = []
        self.authorizations: list[str | None] = []
        self.tunnels_open = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> ConnectProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> ConnectProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        auth = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "proxy-authorization":
                auth = value.strip()
        self.authorizations.append(auth)
        if self.require_auth is not None and auth != self.require_auth:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        if method == "CONNECT":
            self.connects.append(target)
            host, _, port = target.rpartition(":")
            origin = await self._open(host.strip("[]"), int(port))
            if origin is None:
                writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                return
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await writer.drain()
            await self._splice(reader, writer, *origin)
            return
        parts = urlsplit(target)
        if not parts.hostname:
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        self.forwards.append(lines[0])
        origin = await self._open(parts.hostname, parts.port or 80)
        if origin is None:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        # Origin servers accept the absolute form (RFC 9112 3.2.2): relay it as it came,
        # less the proxy's own credentials. Later requests on the connection are relayed
        # as they are: this fake reads only a connection's first head.
        kept = [line for line in lines if not line.lower().startswith("proxy-authorization:")]
        origin[1].write("\r\n".join(kept).encode("latin-1"))
        await self._splice(reader, writer, *origin)

    async def _open(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            return await asyncio.open_connection(self.hosts.get(host, host), port)
        except OSError:
            return None

    async def _splice(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        self.tunnels_open += 1

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError, RuntimeError):
                dst.write_eof()

        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        finally:
            self.tunnels_open -= 1
            up_writer.close()
