"""Issue 9's store faults against real servers: Redis out of memory, a Redis that hangs (black
hole), a cancel racing the watcher's move (lock order), and a read-only primary."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from taskstream.services.executor.executor import Executor
from taskstream.services.ingest.app import build_app
from taskstream.services.ingest.publisher import Publisher
from taskstream.services.janitor.janitor import Janitor
from taskstream.shared import config as config_mod
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.errors import StoreFull
from taskstream.shared.keys import GROUP, Keys
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Publish, Streams
from tests.factories import new_task
from tests.helpers import api_client, query, wait_for
from tests.integration.test_executor import registry_with
from tests.private import PrivateRedis
from tests.proxy import Proxy


async def _fill_until_oom(client: aioredis.Redis, key: str) -> None:
    """Add acknowledged entries until Redis refuses writes (then trimming frees them all)."""
    await client.xgroup_create(key, GROUP, id="0", mkstream=True)
    junk = "x" * 2000
    for _ in range(100_000):
        try:
            await client.xadd(key, {"t": "junk", "a": "1", "pad": junk})
        except Exception:
            break
        got: Any = await client.xreadgroup(GROUP, "filler", {key: ">"}, count=10)
        for _, entries in got:
            await client.xack(key, GROUP, *[i for i, _ in entries])
    else:
        raise AssertionError("Redis never ran out of memory")


async def test_redis_out_of_memory_wedges_nothing(
    config: Config, db: Database, metrics: Metrics, private_redis: PrivateRedis, namespace: str
) -> None:
    raw = aioredis.Redis.from_url(private_redis.url)
    used = int((await raw.info("memory"))["used_memory"])
    await raw.config_set("maxmemory", str(used + 3 * 1024 * 1024))
    await raw.config_set("maxmemory-policy", "noeviction")
    config = config_mod.replace(
        config, redis_url=private_redis.url, janitor_interval_ms=100, publish_retry_ms=50
    )
    streams = Streams.connect(private_redis.url, Keys(namespace))
    try:
        await _fill_until_oom(raw, streams.keys.stream("default"))
        with pytest.raises(StoreFull):
            await streams.ensure_groups()  # what made every service fail to start

        # Ingest keeps accepting: the publish waits.
        async with api_client(config, db, streams, metrics) as (client, publisher):
            resp = await client.post("/v1/tasks", json={"type": "noop"})
            assert resp.status == 201, await resp.text()
            task_id = uuid.UUID((await resp.json())["id"])
            assert publisher.backlog == 1

            # The janitor runs anyway, trims first, and memory comes back.
            stop = asyncio.Event()
            janitor = asyncio.create_task(Janitor(config, db, streams, metrics, name="j").run(stop))
            try:
                await wait_for(lambda: _async(publisher.backlog == 0), timeout=20)
            finally:
                stop.set()
                await janitor
        ran = await Executor(config, db, streams, registry_with(), metrics, consumer="c").run_once()
        assert ran == 1
        view = await db.get_task(task_id)
        assert view is not None and view.status == "succeeded"
    finally:
        await streams.close()
        await raw.aclose()


async def _async(value: bool) -> bool:
    return value


async def test_a_black_holed_redis_never_holds_a_request(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    config = config_mod.replace(config, redis_timeout_ms=1000, publish_retry_ms=50)
    proxy = Proxy.to(config.stores.redis_url)
    await proxy.start()
    proxied = Streams.connect(proxy.url(config.stores.redis_url), streams.keys, timeout_s=1.0)
    publisher = Publisher(proxied, metrics, retry_ms=50)
    app = build_app(config, db, proxied, metrics, publisher)
    try:
        async with TestClient(TestServer(app)) as client:
            await proxied.ping()
            await proxy.blackhole()
            ids = []
            for _ in range(3):
                started = time.monotonic()
                resp = await client.post("/v1/tasks", json={"type": "noop"})
                assert resp.status == 201
                assert time.monotonic() - started < 0.5  # not the socket timeout, not TCP's
                ids.append((await resp.json())["id"])
            assert publisher.backlog == 3
            # The hang is noticed within the socket timeout, and the entries wait.
            await wait_for(lambda: _async(publisher._failing), timeout=5)
            await proxy.up()
            await wait_for(lambda: _async(publisher.backlog == 0), timeout=10)
        assert sorted(f["t"] for _, f in await streams.entries("default")) == sorted(ids)
    finally:
        await proxied.close()
        await proxy.close()


async def test_a_cancel_racing_the_watchers_move_waits_instead_of_deadlocking(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    task = msgspec_replace_scheduled(new_task(config))
    await db.insert_tasks([task])
    mover = await asyncpg.connect(config.stores.database_url)
    try:
        # The watcher's move: due rows first...
        tx = mover.transaction()
        await tx.start()
        await mover.execute("SELECT 1 FROM due WHERE task_id = $1 FOR UPDATE", task.id)
        cancel = asyncio.create_task(db.cancel_task(task.id))
        await asyncio.sleep(0.2)  # the cancel is waiting now
        # ...then the task rows. A cancel holding the task row would deadlock this.
        started = time.monotonic()
        await mover.execute("DELETE FROM due WHERE task_id = $1", task.id)
        await mover.execute("UPDATE tasks SET status = 'queued' WHERE id = $1", task.id)
        assert time.monotonic() - started < 0.5  # no wait for Postgres's deadlock timeout
        await tx.commit()
        view = await asyncio.wait_for(cancel, 5)
    finally:
        await mover.close()
    assert view is not None and view.status == "cancelled"


def msgspec_replace_scheduled(task: Any) -> Any:
    import datetime as dt

    import msgspec

    return msgspec.structs.replace(task, run_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))


async def test_a_read_only_primary_is_503_not_a_crash(
    config: Config, streams: Streams, metrics: Metrics
) -> None:
    name = config.stores.database_url.rsplit("/", 1)[1]
    await query(
        config.stores.database_url,
        f'ALTER DATABASE "{name}" SET default_transaction_read_only = on',
    )
    readonly = await Database.connect(config.stores.database_url, min_size=0, max_size=2)
    try:
        async with api_client(config, readonly, streams, metrics) as (client, _):
            resp = await client.post("/v1/tasks", json={"type": "noop"})
            assert resp.status == 503
            assert (await resp.json())["error"]["code"] == "unavailable"
    finally:
        await readonly.close()
        conn = await asyncpg.connect(
            config.stores.database_url,
            server_settings={"default_transaction_read_only": "off"},
        )
        await conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = off')
        await conn.close()


async def test_publishing_under_oom_is_store_full(
    config: Config, private_redis: PrivateRedis, namespace: str
) -> None:
    raw = aioredis.Redis.from_url(private_redis.url)
    streams = Streams.connect(private_redis.url, Keys(namespace))
    try:
        await streams.ensure_groups()
        await raw.config_set("maxmemory", "1")
        with pytest.raises(StoreFull):
            await streams.publish([Publish(priority="low", task_id=uuid.uuid4(), attempt=1)])
    finally:
        await raw.config_set("maxmemory", "0")
        await streams.close()
        await raw.aclose()
