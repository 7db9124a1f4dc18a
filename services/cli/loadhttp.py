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
import os
from typing import NamedTuple
from urllib.parse import urlsplit

from taskstream.shared.config import env_name

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

    def __init__(
        self, url: str, size: int, *, timeout: float = 120.0, api_key: str | None = None
    ) -> None:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme != "http" or not parts.hostname or port == -1:
            raise HttpError(f"only http://host[:port] URLs are supported, got {url!r}")
        self._host = parts.hostname
        self._port = port or 80
        self._prefix = parts.path.rstrip("/")
        self._host_header = parts.netloc
        self._timeout = timeout
        self._slots = asyncio.Semaphore(max(1, size))
        self._idle: list[Connection] = []
        # Ingest with AUTH_MODE on takes a bearer key: TASKSTREAM_API_KEY, as the client's.
        key = api_key if api_key is not None else os.environ.get(env_name("api_key"), "")
        self._auth = f"Authorization: Bearer {key}\r\n" if key else ""

    async def post(self, path: str, body: bytes) -> Response:
        """POST a JSON ``body`` to ``path``; any status comes back as a ``Response``."""
        request = (
            f"POST {self._prefix}{path} HTTP/1.1\r\nHost: {self._host_header}\r\n"
            f"Content-Type: application/json\r\n{self._auth}Content-Length: {len(body)}\r\n\r\n"
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
            reader, writer = conn
            if writer.is_closing() or reader.at_eof() or reader.exception() is not None:
                writer.close()  # closed or reset by the server while idle
                continue
            try:
                return await self._on(conn, request, reused=True)
            except _Stale:
                # It went away just as this request was written, before any byte of an answer:
                # the server had not taken the request, so it is sent again on a new connection
                # (a server that died mid-request can make this a duplicate; acceptable for a
                # load generator, which is why nothing else uses this client).
                continue
        try:
            conn = await asyncio.open_connection(self._host, self._port, limit=MAX_HEAD)
        except OSError as exc:
            raise HttpError(f"cannot connect to {self._host}:{self._port}: {exc}") from exc
        return await self._on(conn, request, reused=False)

    async def _on(self, conn: Connection, request: bytes, *, reused: bool) -> Response:
        reader, writer = conn
        answered = False
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            answered = True
            response, keep = await _read(reader, head)
        except Exception as exc:
            writer.close()
            if isinstance(exc, HttpError):
                raise
            silent = isinstance(exc, (ConnectionError, RuntimeError)) or (
                isinstance(exc, asyncio.IncompleteReadError) and not exc.partial
            )
            if reused and silent and not answered:
                raise _Stale from exc
            if isinstance(exc, (OSError, ValueError, RuntimeError, asyncio.IncompleteReadError,
                                asyncio.LimitOverrunError)):  # fmt: skip
                raise HttpError(f"connection failed: {exc!r}") from exc
            raise
        except BaseException:  # cancelled (a timeout) mid-exchange: the connection is unusable
            writer.close()
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
    while True:
        version, code, headers = _parse_head(head)
        if not (100 <= code < 200):
            break
        head = await reader.readuntil(b"\r\n\r\n")  # an interim answer: the real one follows
    keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if headers.get("transfer-encoding", "").lower() == "chunked":  # before Content-Length
        body = await _chunks(reader)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif code in (204, 304):
        body = b""
    else:
        body, keep = await reader.read(), False
    return Response(code, headers, body), keep


def _parse_head(head: bytes) -> tuple[str, int, dict[str, str]]:
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
    return version, int(code), headers


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
