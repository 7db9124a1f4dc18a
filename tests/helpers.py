"""Test helpers shared by the integration and end-to-end tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from taskstream.services.ingest.app import build_app
from taskstream.services.ingest.console.session import Access
from taskstream.services.ingest.publisher import Publisher
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams


@asynccontextmanager
async def api_client(
    config: Config,
    db: Database,
    streams: Streams,
    metrics: Metrics,
    console_access: Access | None = None,
) -> AsyncIterator[tuple[TestClient[Any, Any], Publisher]]:
    publisher = Publisher(streams, metrics, retry_ms=config.ingest.publish_retry_ms, db=db)
    app = build_app(config, db, streams, metrics, publisher, console_access=console_access)
    app.middlewares.append(_settle(publisher))
    async with TestClient(TestServer(app)) as client:
        yield client, publisher


def _settle(publisher: Publisher) -> Any:
    """A test-only middleware: answer once the request's entries were tried (publishing is
    off the request path in ingest), so a test sees them right after the answer."""

    @web.middleware
    async def settle(request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        await publisher.settled()
        return response

    return settle


async def wait_for(
    predicate: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, every: float = 0.02
) -> None:
    """Poll ``predicate`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(every)


async def query(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Run one statement on its own connection (test setup and checks)."""
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()
