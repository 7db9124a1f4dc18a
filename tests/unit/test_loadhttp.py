"""The load generator's lean HTTP client, against a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from services.cli.loadhttp import HttpClient, HttpError
from tests.e2e.system import free_port
from tests.helpers import wait_for


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[int]]]:
    """An HTTP server that echoes bodies; it records the client port of each request, so a
    test can tell a reused connection from a new one."""
    ports: list[int] = []

    async def echo(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        ports.append(peer[1] if peer else -1)
        body = await request.read()
        return web.json_response({"got": body.decode(), "type": request.content_type}, status=201)

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=200)
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b"ab", b"cd", b"ef"):
            await resp.write(part)
        await resp.write_eof()
        return resp

    async def close(request: web.Request) -> web.Response:
        return web.Response(status=503, body=b"busy", headers={"Connection": "close",
                                                               "Retry-After": "1"})  # fmt: skip

    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_post("/chunked", chunked)
    app.router.add_post("/close", close)
    runner = web.AppRunner(app, keepalive_timeout=0.3)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", ports
    finally:
        await runner.cleanup()


async def test_posts_json_and_reuses_its_connections(server: tuple[str, list[int]]) -> None:
    url, ports = server
    client = HttpClient(url, 2)
    try:
        answers = [await client.post("/echo", b'{"n":%d}' % i) for i in range(5)]
    finally:
        await client.close()
    assert [a.status for a in answers] == [201] * 5
    assert answers[3].body == b'{"got": "{\\"n\\":3}", "type": "application/json"}'
    assert answers[0].headers["content-type"].startswith("application/json")
    assert len(set(ports)) == 1  # one keep-alive connection carried all five


async def test_at_most_size_connections_at_once(server: tuple[str, list[int]]) -> None:
    url, ports = server
    client = HttpClient(url, 3)
    try:
        answers = await asyncio.gather(*(client.post("/echo", b"{}") for _ in range(30)))
    finally:
        await client.close()
    assert all(a.status == 201 for a in answers)
    assert 1 <= len(set(ports)) <= 3


async def test_reads_chunked_answers(server: tuple[str, list[int]]) -> None:
    url, _ = server
    client = HttpClient(url, 1)
    try:
        first = await client.post("/chunked", b"{}")
        second = await client.post("/chunked", b"{}")
    finally:
        await client.close()
    assert (first.status, first.body) == (200, b"abcdef")
    assert second.body == b"abcdef"


async def test_a_connection_the_server_closes_is_not_reused(
    server: tuple[str, list[int]],
) -> None:
    url, ports = server
    client = HttpClient(url, 1)
    try:
        busy = await client.post("/close", b"{}")
        after = await client.post("/echo", b"{}")
        [(reader, _)] = client._idle

        async def dropped() -> bool:  # the server's keep-alive timeout closes the idle one
            return reader.at_eof()

        await wait_for(dropped, timeout=5)
        later = await client.post("/echo", b"{}")
    finally:
        await client.close()
    assert (busy.status, busy.headers["retry-after"], busy.body) == (503, "1", b"busy")
    assert after.status == 201 and later.status == 201
    assert len(set(ports)) == 2  # a new connection after the timeout, not an error


async def test_an_unreachable_server_is_an_http_error() -> None:
    client = HttpClient(f"http://127.0.0.1:{free_port()}", 1)
    with pytest.raises(HttpError, match="cannot connect"):
        await client.post("/v1/tasks", b"{}")


def test_only_plain_http_urls() -> None:
    with pytest.raises(HttpError, match="only http://"):
        HttpClient("https://example.com", 1)
