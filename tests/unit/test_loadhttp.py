"""The load generator's lean HTTP client, against real servers on loopback: aiohttp's, and a
raw one for what aiohttp never does (resets, interim answers, endless heads)."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import uvloop
from aiohttp import web

from taskstream.services.cli.loadhttp import HttpClient, HttpError, Response
from tests.e2e.system import free_port
from tests.helpers import wait_for

Server = tuple[str, list[int]]


@asynccontextmanager
async def aiohttp_server(keepalive: float = 75.0) -> AsyncIterator[Server]:
    """An aiohttp server that echoes bodies; it records the client port of every request, so
    a test can tell a reused connection from a new one."""
    ports: list[int] = []

    def seen(request: web.Request) -> None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        ports.append(peer[1] if peer else -1)

    async def echo(request: web.Request) -> web.Response:
        seen(request)
        body = await request.read()
        return web.json_response({"got": body.decode(), "type": request.content_type}, status=201)

    async def chunked(request: web.Request) -> web.StreamResponse:
        seen(request)
        resp = web.StreamResponse(status=200)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b"ab", b"cd", b"ef"):
            await resp.write(part)
        await resp.write_eof()
        return resp

    async def close(request: web.Request) -> web.Response:
        seen(request)
        return web.Response(status=503, body=b"busy", headers={"Connection": "close",
                                                               "Retry-After": "1"})  # fmt: skip

    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_post("/chunked", chunked)
    app.router.add_post("/close", close)
    runner = web.AppRunner(app, keepalive_timeout=keepalive)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", ports
    finally:
        await runner.cleanup()


Answer = Callable[[int, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(answer: Answer) -> AsyncIterator[tuple[str, list[int]]]:
    """A bare TCP server: reads each request (head + Content-Length body) and lets ``answer``
    write whatever bytes it likes (``answer(n, writer)``, n counting requests from 0)."""
    ports: list[int] = []
    count = 0
    handlers: set[asyncio.Task[None]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        ports.append(writer.get_extra_info("peername")[1])
        writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                n, count = count, count + 1
                await answer(n, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", ports
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        for writer in writers:
            writer.close()
        await server.wait_closed()


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST instead of a FIN (SO_LINGER with a zero timeout)."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def test_posts_json_and_reuses_its_connections() -> None:
    async with aiohttp_server() as (url, ports):
        client = HttpClient(url, 2)
        try:
            answers = [await client.post("/echo", b'{"n":%d}' % i) for i in range(5)]
        finally:
            await client.close()
    assert [a.status for a in answers] == [201] * 5
    assert answers[3].body == b'{"got": "{\\"n\\":3}", "type": "application/json"}'
    assert answers[0].headers["content-type"].startswith("application/json")
    assert len(set(ports)) == 1  # one keep-alive connection carried all five


async def test_at_most_size_connections_at_once() -> None:
    async with aiohttp_server() as (url, ports):
        client = HttpClient(url, 3)
        try:
            answers = await asyncio.gather(*(client.post("/echo", b"{}") for _ in range(30)))
        finally:
            await client.close()
    assert all(a.status == 201 for a in answers)
    assert 1 <= len(set(ports)) <= 3


async def one_by_one(url: str, *paths: str) -> list[Response]:
    """POST ``{}`` to each path in turn over a client of one connection."""
    client = HttpClient(url, 1)
    try:
        return [await client.post(path, b"{}") for path in paths]
    finally:
        await client.close()


async def test_reads_chunked_answers_and_keeps_the_connection() -> None:
    async with aiohttp_server() as (url, ports):
        first, second = await one_by_one(url, "/chunked", "/chunked")
    assert (first.status, first.body) == (200, b"abcdef")
    assert second.body == b"abcdef"
    assert len(set(ports)) == 1


async def test_connection_close_is_honoured() -> None:
    async with aiohttp_server() as (url, ports):
        busy, after = await one_by_one(url, "/close", "/echo")
    assert (busy.status, busy.headers["retry-after"], busy.body) == (503, "1", b"busy")
    assert after.status == 201
    assert ports[0] != ports[1]  # the answer said close: the next request took a new one


async def test_an_idle_connection_the_server_closed_is_replaced() -> None:
    async with aiohttp_server(keepalive=0.2) as (url, ports):
        client = HttpClient(url, 1)
        try:
            first = await client.post("/echo", b"{}")
            [(reader, _)] = client._idle

            async def dropped() -> bool:  # the server's keep-alive timeout closes it
                return reader.at_eof()

            await wait_for(dropped, timeout=5)
            later = await client.post("/echo", b"{}")
        finally:
            await client.close()
    assert first.status == 201 and later.status == 201
    assert ports[0] != ports[1]


async def _reset_while_idle() -> list[int]:
    idle = asyncio.Event()

    async def answer(n: int, writer: asyncio.StreamWriter) -> None:
        writer.write(OK)
        await writer.drain()
        if n == 0:
            await idle.wait()
            reset(writer)

    async with raw_server(answer) as (url, ports):
        client = HttpClient(url, 1)
        try:
            assert (await client.post("/x", b"{}")).body == b"ok"
            idle.set()
            [(reader, _)] = client._idle

            async def gone() -> bool:
                return reader.at_eof() or reader.exception() is not None

            await wait_for(gone, timeout=5)
            assert (await client.post("/x", b"{}")).body == b"ok"
        finally:
            await client.close()
        return ports


async def test_an_idle_connection_the_server_reset_is_replaced() -> None:
    ports = await _reset_while_idle()
    assert len(ports) == 2


def test_an_idle_connection_the_server_reset_is_replaced_on_uvloop() -> None:
    # The load generator runs on uvloop, whose transports fail differently from asyncio's.
    ports = uvloop.run(_reset_while_idle())
    assert len(ports) == 2


async def test_interim_answers_are_skipped() -> None:
    async def answer(n: int, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)

    async with raw_server(answer) as (url, _):
        client = HttpClient(url, 1)
        try:
            got = await client.post("/x", b"{}")
        finally:
            await client.close()
    assert (got.status, got.body) == (200, b"ok")


async def test_a_server_that_never_answers_is_a_timeout() -> None:
    async def answer(n: int, writer: asyncio.StreamWriter) -> None:
        await asyncio.Event().wait()

    async with raw_server(answer) as (url, _):
        client = HttpClient(url, 1, timeout=0.2)
        with pytest.raises(HttpError, match=r"no answer within 0\.2 s"):
            await client.post("/x", b"{}")
        assert client._idle == []  # the connection it gave up on is not reused


async def test_a_head_too_large_or_garbled_is_an_http_error() -> None:
    async def answer(n: int, writer: asyncio.StreamWriter) -> None:
        if n == 0:
            writer.write(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 100_000 + b"\r\n\r\n")
        else:
            writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")

    async with raw_server(answer) as (url, _):
        client = HttpClient(url, 1)
        with pytest.raises(HttpError, match="connection failed"):
            await client.post("/x", b"{}")
        with pytest.raises(HttpError, match=r"not an HTTP/1\.x answer"):
            await client.post("/x", b"{}")


async def test_an_unreachable_server_is_an_http_error() -> None:
    client = HttpClient(f"http://127.0.0.1:{free_port()}", 1)
    with pytest.raises(HttpError, match="cannot connect"):
        await client.post("/v1/tasks", b"{}")


@pytest.mark.parametrize("url", ["https://example.com", "http://127.0.0.1:99999", "localhost"])
def test_only_plain_http_urls(url: str) -> None:
    with pytest.raises(HttpError, match="only http://"):
        HttpClient(url, 1)


async def test_sends_the_api_key_as_a_bearer_token(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response({}, status=201)

    app = web.Application()
    app.router.add_post("/v1/tasks", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        monkeypatch.setenv("TASKSTREAM_API_KEY", "ts_live_" + "k" * 43)
        from_env = HttpClient(f"http://127.0.0.1:{port}", 1)
        given = HttpClient(f"http://127.0.0.1:{port}", 1, api_key="")
        try:
            await from_env.post("/v1/tasks", b"{}")
            await given.post("/v1/tasks", b"{}")
        finally:
            await from_env.close()
            await given.close()
    finally:
        await runner.cleanup()
    assert seen == ["Bearer ts_live_" + "k" * 43, None]
