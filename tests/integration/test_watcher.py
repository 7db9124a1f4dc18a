"""The watcher against real Redis and Postgres: due rows move on time, lost entries return."""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest

from taskstream.services.executor.executor import Executor
from taskstream.services.watcher.watcher import Watcher
from taskstream.shared import config as config_mod
from taskstream.shared import sql
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.domain import NewTask
from taskstream.shared.handlers import registry
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.factories import enqueue, new_task
from tests.helpers import query as execute
from tests.integration.test_executor import registry_with


def delayed(config: Config, run_at: dt.datetime) -> NewTask:
    return msgspec.structs.replace(new_task(config), run_at=run_at)


async def insert_due_now(config: Config, db: Database, task: NewTask) -> None:
    """Insert ``task`` scheduled (an hour ahead), then make its due row due already (time
    passes in Postgres)."""
    await db.insert_tasks(
        [msgspec.structs.replace(task, run_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))]
    )
    await execute(
        config.stores.database_url,
        "UPDATE due SET due_at = now() - interval '1 second', "
        "bucket = date_trunc('hour', now() - interval '1 second', 'UTC') WHERE task_id = $1",
        task.id,
    )


async def entry_tasks(streams: Streams, priority: str = "default") -> list[uuid.UUID]:
    return [uuid.UUID(f["t"]) for _, f in await streams.entries(priority)]


async def test_retry_moves_only_when_due_and_then_succeeds(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    config = config_mod.replace(config, retry_base_ms=60_000, retry_jitter_ms=0)
    [task_id] = await enqueue(db, streams, [new_task(config, "flaky", {"fail_first_n": 1})])
    ex = Executor(config, db, streams, registry, metrics, consumer="c")
    await ex.run_once()
    watcher = Watcher(config, db, streams, metrics)

    assert (await watcher.run_once()).moved == 0  # due in a minute: never early
    await execute(
        config.stores.database_url,
        "UPDATE due SET due_at = now(), bucket = date_trunc('hour', now(), 'UTC')",
    )
    assert (await watcher.run_once()).moved == 1
    view = await db.get_task(task_id)
    assert view is not None and (view.status, view.attempt) == ("queued", 2)
    await ex.run_once()
    view = await db.get_task(task_id)
    assert view is not None and view.status == "succeeded"


async def test_delayed_task_is_released_no_earlier_than_asked(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    now = dt.datetime.now(dt.UTC)
    soon, later = (
        delayed(config, now + dt.timedelta(seconds=30)),
        delayed(config, now + dt.timedelta(hours=5)),
    )
    await db.insert_tasks([soon, later])
    watcher = Watcher(config, db, streams, metrics)
    assert (await watcher.run_once()).moved == 0
    assert await entry_tasks(streams) == []
    # Time passes (in Postgres too): the first becomes due, the other is hours away.
    await execute(
        config.stores.database_url,
        "UPDATE due SET due_at = due_at - interval '31 seconds', "
        "bucket = date_trunc('hour', due_at - interval '31 seconds', 'UTC') WHERE task_id = $1",
        soon.id,
    )
    assert (await watcher.run_once()).moved == 1
    assert await entry_tasks(streams) == [soon.id]
    view = await db.get_task(later.id)
    assert view is not None and view.status == "scheduled"


async def test_entries_are_added_only_once_the_move_is_committed(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    # An entry added before the commit could be read by an executor whose claim still sees
    # the task scheduled (or retrying) and drops it. So when the entry goes out, another
    # connection must already see the task queued, and a claim must succeed.
    task = new_task(config)
    await insert_due_now(config, db, task)
    seen: list[str] = []

    async def publish(rows: Any) -> None:
        [row] = await execute(
            config.stores.database_url, "SELECT status FROM tasks WHERE id=$1", task.id
        )
        seen.append(row["status"])

    await db.move_due(10, publish)
    assert seen == ["queued"]


async def test_crash_between_commit_and_xadd_is_repaired_and_runs_once(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    task = new_task(config)
    await insert_due_now(config, db, task)
    watcher = Watcher(config, db, streams, metrics)
    await watcher.start()

    async def crash(rows: Any) -> None:
        raise RuntimeError("killed after the commit, before the XADD")

    with pytest.raises(RuntimeError):
        await db.move_due(10, crash)
    view = await db.get_task(task.id)
    assert view is not None and view.status == "queued"  # committed, but no entry
    assert await entry_tasks(streams) == []

    # Once the group has delivered everything for REPAIR_AFTER_MS, the repair re-sends it.
    # (Time passes for Postgres: the task was queued that long ago.)
    await execute(
        config.stores.database_url,
        "UPDATE tasks SET updated_at = updated_at - $1 * interval '1 millisecond'",
        config.watcher.repair_after_ms + 1000,
    )
    report = await Watcher(config, db, streams, metrics).run_once()
    assert report.repaired == 1
    runs: list[uuid.UUID] = []

    async def count(payload: Any, ctx: Any) -> None:
        runs.append(ctx.task_id)

    await Executor(config, db, streams, registry_with(noop=count), metrics, consumer="c").run_once()
    assert runs == [task.id]


async def test_redis_loss_republishes_every_queued_task_once(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    ids = await enqueue(db, streams, [new_task(config) for _ in range(20)])
    watcher = Watcher(config, db, streams, metrics)
    assert (await watcher.run_once()).repaired == 0
    await streams.delete_namespace()  # Redis restarted empty (this namespace only)

    assert (await watcher.run_once()).repaired == 20
    assert sorted(await entry_tasks(streams)) == sorted(ids)
    assert (await watcher.run_once()).repaired == 0  # exactly once per attempt
    ran = await Executor(config, db, streams, registry, metrics, consumer="c").run_once()
    assert ran == 20


async def test_lost_entry_is_republished_once_the_group_delivered_past_it(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    lost = new_task(config)
    await db.insert_tasks([lost])  # committed, but ingest died before its XADD
    await execute(
        config.stores.database_url, "UPDATE tasks SET updated_at = now() - interval '1 hour'"
    )
    watcher = Watcher(config, db, streams, metrics)
    # Everything in the stream was delivered and the task is older than the threshold.
    report = await watcher.run_once()
    assert report.repaired == 1
    assert await entry_tasks(streams) == [lost.id]
    assert (await watcher.run_once()).repaired == 0  # stamped: not re-sent again
    await Executor(config, db, streams, registry, metrics, consumer="c").run_once()
    view = await db.get_task(lost.id)
    assert view is not None and view.status == "succeeded"


async def test_backlog_waiting_for_delivery_is_not_republished(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    await enqueue(db, streams, [new_task(config) for _ in range(5)])
    await execute(
        config.stores.database_url, "UPDATE tasks SET updated_at = now() - interval '1 hour'"
    )
    watcher = Watcher(config, db, streams, metrics)
    assert (await watcher.run_once()).repaired == 0  # entries exist, just not delivered yet


async def test_watcher_reads_only_current_buckets_however_large_history_grows(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    # A million due rows (retries of a million tasks) spread over the next thousand hours,
    # and ten rows due now: a pass moves the ten and touches only the current buckets.
    url = config.stores.database_url
    async with bulk_load(url, "tasks", []):
        await execute(
            url,
            """
            INSERT INTO tasks (id, type, priority, payload, status, max_attempts,
                retry_base_ms, retry_max_ms, retry_jitter_ms, timeout_ms, created_at)
            SELECT id, 'noop', 'default', '{}', 'retrying', 5, 500, 30000, 500, 1000,
                now() - interval '30 days'
            FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, 1000010)) g
            ORDER BY id
            """,
        )
    async with bulk_load(url, "due", ["due_bucket_due_at"], primary_key="due_pkey"):
        await execute(
            url,
            """
            INSERT INTO due (bucket, due_at, task_id, attempt, priority, kind)
            SELECT date_trunc('hour', d, 'UTC'), d, id, 1, 'default', 'retry'
            FROM (
                SELECT id, CASE WHEN row_number() OVER () <= 10 THEN now() - interval '1 second'
                    ELSE now() + (random() * 1000 + 1) * interval '1 hour' END AS d
                FROM tasks
            ) t
            """,
        )
    await execute(config.stores.database_url, "ANALYZE tasks")
    await execute(config.stores.database_url, "ANALYZE due")
    conn = await asyncpg.connect(config.stores.database_url)
    try:
        async with conn.transaction():  # EXPLAIN ANALYZE runs the statement: roll it back
            text = await conn.fetchval(
                "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
                + sql.MOVE_DUE.replace("$1", str(config.watcher.watch_batch))
            )
            raise _Rollback
    except _Rollback:
        pass
    finally:
        await conn.close()
    assert "due_bucket_due_at" in text  # the bucket index, not a scan of the table
    root = msgspec.json.decode(text)[0]["Plan"]
    pages = root.get("Shared Hit Blocks", 0) + root.get("Shared Read Blocks", 0)
    assert pages < 500, pages  # reading either table whole would be tens of thousands

    report = await Watcher(config, db, streams, metrics).run_once()
    assert report.moved == 10


class _Rollback(Exception):
    pass


@contextlib.asynccontextmanager
async def bulk_load(
    url: str, table: str, indexes: list[str], primary_key: str | None = None
) -> AsyncIterator[None]:
    """Load a table the fast way: its indexes dropped and rebuilt from their own definitions
    afterwards, and no per-row foreign-key triggers (the rows are consistent by
    construction). The schema ends up exactly as the migrations made it."""
    conn = await asyncpg.connect(url)
    try:
        defs = [
            await conn.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = $1", name)
            for name in indexes
        ]
        pk = None
        if primary_key:
            pk = await conn.fetchval(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = $1",
                primary_key,
            )
            await conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {primary_key}")
        for name in indexes:
            await conn.execute(f"DROP INDEX {name}")
        await conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER ALL")
        yield
        await conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER ALL")
        if pk:
            await conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT {primary_key} {pk}")
        for definition in defs:
            await conn.execute(definition)
    finally:
        await conn.close()
