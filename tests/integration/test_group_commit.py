"""Group commit: concurrent requests share one INSERT and one XADD round trip."""

from __future__ import annotations

import asyncio
from typing import Any

from taskstream.services.ingest.state import COMMITTER
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.errors import StoreUnavailable
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.helpers import api_client, wait_for


class GatedDatabase(Database):
    """Holds the first insert until released, and records every group's size."""

    def __init__(self, db: Database, fail_second: bool = False) -> None:
        super().__init__(db._pool)
        self.groups: list[int] = []
        self.gate = asyncio.Event()
        self.fail_second = fail_second

    async def insert_tasks(self, tasks: Any, **options: Any) -> Any:
        self.groups.append(len(tasks))
        if len(self.groups) == 1:
            await self.gate.wait()
        elif self.fail_second:
            raise StoreUnavailable("Postgres is not reachable: simulated")
        return await super().insert_tasks(tasks, **options)


async def test_requests_arriving_during_a_commit_share_the_next_one(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    gated = GatedDatabase(db)
    async with api_client(config, gated, streams, metrics) as (client, _):
        first = asyncio.create_task(client.post("/v1/tasks", json={"type": "noop"}))
        await wait_for(lambda: _async(len(gated.groups) == 1))
        rest = [
            asyncio.create_task(client.post("/v1/tasks", json={"type": "noop", "payload": i}))
            for i in range(19)
        ]
        committer = client.app[COMMITTER]
        await wait_for(lambda: _async(len(committer._queue) == 19))
        gated.gate.set()
        responses = await asyncio.gather(first, *rest)
        ids = {(await r.json())["id"] for r in responses}

    assert [r.status for r in responses] == [201] * 20
    assert gated.groups == [1, 19]
    assert len(ids) == 20
    entries = await streams.entries("default")
    assert sorted(f["t"] for _, f in entries) == sorted(ids)


async def test_a_failed_group_commit_answers_every_request_with_503_and_stores_nothing(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    gated = GatedDatabase(db, fail_second=True)
    async with api_client(config, gated, streams, metrics) as (client, _):
        first = asyncio.create_task(client.post("/v1/tasks", json={"type": "noop"}))
        await wait_for(lambda: _async(len(gated.groups) == 1))
        rest = [
            asyncio.create_task(client.post("/v1/tasks", json={"type": "noop"})) for _ in range(5)
        ]
        await wait_for(lambda: _async(len(client.app[COMMITTER]._queue) == 5))
        gated.gate.set()
        responses = await asyncio.gather(first, *rest)

    assert [r.status for r in responses] == [201] + [503] * 5
    assert len(await streams.entries("default")) == 1
    async with db._pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM tasks") == 1


async def _async(value: bool) -> bool:
    return value
