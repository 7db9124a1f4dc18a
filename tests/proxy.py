"""A small TCP proxy for tests: make the real Redis or Postgres "unreachable" on demand.

A test connects a client through the proxy instead of straight to the shared server; then
``down()`` refuses new connections and cuts every open one, and ``up()`` accepts again on the
same port. The shared servers themselves are never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit


class Proxy:
    """Forwards ``127.0.0.1:<url_port>`` to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self._port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()
        self._swallow = False
        self._drop_answers = 0
        self.dropped = 0  # answers cut by ``drop_answers``

    @classmethod
    def to(cls, url: str) -> Proxy:
        """A proxy to the host and port of ``url`` (``redis://…`` or ``postgresql://…``)."""
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None, url
        return cls(parts.hostname, parts.port)

    @property
    def url_port(self) -> int:
        """The port clients connect to (fixed from ``start()`` on, across down/up)."""
        assert self._port, "start() the proxy first"
        return self._port

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's."""
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)
        userinfo = netloc[0] + "@" if len(netloc) == 2 else ""
        return urlunsplit(parts._replace(netloc=f"{userinfo}127.0.0.1:{self.url_port}"))

    @property
    def connections(self) -> int:
        """Client connections currently open through the proxy."""
        return len(self._pipes) // 2

    def reserve(self, port: int) -> None:
        """Use ``port`` without listening yet (the store looks down until ``up()``)."""
        self._port = port

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        await self._listen(0)

    async def up(self) -> None:
        """Accept connections again, on the same port (and stop swallowing)."""
        self._swallow = False
        if self._server is None:
            await self._listen(self.url_port)

    async def blackhole(self) -> None:
        """Keep connections open but answer nothing: whatever clients send is swallowed, as
        by a host that vanished without a reset (no RST, no FIN: only timeouts tell)."""
        self._swallow = True

    def drop_answers(self, n: int) -> None:
        """Cut the connection of each of the next ``n`` answers from the target as its first
        bytes arrive: the request reached the target (and was acted on), the client gets no
        answer, as when a server is killed between its commit and its reply."""
        self._drop_answers = n

    async def down(self) -> None:
        """Stop accepting (new connections are refused) and cut every open connection."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        pipes = list(self._pipes)
        for pipe in pipes:
            pipe.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def close(self) -> None:
        await self.down()

    async def __aenter__(self) -> Proxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _listen(self, port: int) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", port, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._swallow:
            self._writers.add(writer)
            try:
                while await reader.read(65536):
                    pass
            except (ConnectionError, OSError):
                pass
            finally:
                self._writers.discard(writer)
                writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        if self._server is None:  # went down while connecting
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        pipes = (
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer, answers=True)),
        )
        self._pipes.update(pipes)
        try:
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._pipes.difference_update(pipes)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answers: bool = False
    ) -> None:
        """Copy one direction until EOF, then close both sides (cancelled by ``down()``)."""
        try:
            while data := await reader.read(65536):
                if self._swallow:
                    continue
                if answers and self._drop_answers > 0:
                    self._drop_answers -= 1
                    self.dropped += 1
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.transport.abort()
