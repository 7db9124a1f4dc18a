"""A lean HTTP/1.1 client for the load generator's submissions.

The load generator shares the machine with the system it measures, so what it spends per
request is taken from ingest, the executors and Postgres. aiohttp's client spent about as
much CPU per request as the ingest handler it was loading; this one keeps ``size``
keep-alive connections, writes each request as one prebuilt buffer and reads the answer by
its ``Content-Length`` (or chunks, or until the server closes), nothing more. It speaks
plain ``http://`` only; the progress polling and everything else keep aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import NamedTuple
from urllib.parse import urlsplit

MAX_HEAD = 64 * 1024  # a response head larger than this is an error


class HttpError(Exception):
    """The request could not be sent or its answer could not be read."""


class Response(NamedTuple):
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class HttpClient:
    """Up to ``size`` requests at once to one ``http://host:port``, over reused connections."""

    def __init__(self, url: str, size: int, *, timeout: float = 120.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise HttpError(f"only http://host[:port] URLs are supported, got {url!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._prefix = parts.path.rstrip("/")
        self._host_header = parts.netloc
        self._timeout = timeout
        self._slots = asyncio.Semaphore(max(1, size))
        self._idle: list[Connection] = []

    async def post(self, path: str, body: bytes) -> Response:
        """POST a JSON ``body`` to ``path``; any status comes back as a ``Response``."""
        request = (
            f"POST {self._prefix}{path} HTTP/1.1\r\nHost: {self._host_header}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        async with self._slots:
            try:
                async with asyncio.timeout(self._timeout):
                    return await self._exchange(request)
            except TimeoutError:
                raise HttpError(f"no answer within {self._timeout:g} s") from None

    async def _exchange(self, request: bytes) -> Response:
        while self._idle:
            conn = self._idle.pop()
            try:
                return await self._on(conn, request)
            except _Stale:
                continue  # the server closed it while idle, before reading this request
        try:
            conn = await asyncio.open_connection(self._host, self._port, limit=MAX_HEAD)
        except OSError as exc:
            raise HttpError(f"cannot connect to {self._host}:{self._port}: {exc}") from exc
        try:
            return await self._on(conn, request)
        except _Stale as exc:
            raise HttpError("the server closed the connection without answering") from exc

    async def _on(self, conn: Connection, request: bytes) -> Response:
        reader, writer = conn
        try:
            writer.write(request)
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if not exc.partial:
                    raise _Stale from None
                raise
            response, keep = await _read(reader, head)
        except BaseException as exc:
            writer.close()
            if isinstance(exc, _Stale):
                raise
            if isinstance(exc, (OSError, ValueError, asyncio.IncompleteReadError)):
                raise HttpError(f"connection failed: {exc!r}") from exc
            raise
        if keep:
            self._idle.append(conn)
        else:
            writer.close()
        return response

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class _Stale(Exception):
    """A reused connection was closed before any byte of the answer came back."""


async def _read(reader: asyncio.StreamReader, head: bytes) -> tuple[Response, bool]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest.partition(" ")[0]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise HttpError(f"not an HTTP/1.x answer: {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _chunks(reader)
    elif code in ("204", "304"):
        body = b""
    else:
        body, keep = await reader.read(), False
    return Response(int(code), headers, body), keep


async def _chunks(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
