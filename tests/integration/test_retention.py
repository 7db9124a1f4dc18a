"""Retention: finished tasks, idempotency keys and dead entries go after their age, in bounded
statements, and no janitor statement reads more as history grows."""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

import asyncpg

from taskstream.services.janitor.retention import Retention
from taskstream.shared import config as config_mod
from taskstream.shared import ids, sql
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.helpers import api_client, query

DAY_S = 86_400
BATCH = 100  # the retention batch of the cost test


def id_at(seconds_ago: float) -> uuid.UUID:
    """A version 7 id made ``seconds_ago`` (random low bits)."""
    ms = int((time.time() - seconds_ago) * 1000)
    return uuid.UUID(int=ids.floor(ms).int | int.from_bytes(os.urandom(8)) >> 2)


async def add(
    url: str, *, created_days: float, status: str, finished_days: float | None = None
) -> uuid.UUID:
    task_id = id_at(created_days * DAY_S)
    finished = (
        f"now() - interval '{finished_days * DAY_S} seconds'"
        if finished_days is not None
        else "NULL"
    )
    await query(
        url,
        "INSERT INTO tasks (id, type, priority, payload, status, max_attempts, retry_base_ms, "
        "retry_max_ms, retry_jitter_ms, timeout_ms, created_at, finished_at) VALUES "
        f"($1, 't', 'default', '{{}}', $2, 3, 0, 0, 0, 1000, "
        f"now() - interval '{created_days * DAY_S} seconds', {finished})",
        task_id,
        status,
    )
    if status == "dead":
        await query(
            url,
            "INSERT INTO dead_letters (task_id, priority, type, attempt, reason) "
            "VALUES ($1, 'default', 't', 1, 'attempts_exhausted')",
            task_id,
        )
        await query(
            url,
            "INSERT INTO task_attempts (task_id, attempt, outcome) VALUES ($1, 1, 'failed')",
            task_id,
        )
    return task_id


async def remaining(url: str) -> set[uuid.UUID]:
    return {r["id"] for r in await query(url, "SELECT id FROM tasks")}


async def test_retention_deletes_only_what_is_past_its_age(config: Config, db: Database) -> None:
    url = config.stores.database_url
    gone = [
        await add(url, created_days=9, status="succeeded", finished_days=8),
        await add(url, created_days=9, status="cancelled", finished_days=8),
        await add(url, created_days=40, status="dead", finished_days=31),
    ]
    kept = [
        await add(url, created_days=9, status="succeeded", finished_days=6),
        await add(url, created_days=9, status="dead", finished_days=8),  # dead: 30 days
        await add(url, created_days=10, status="running"),  # never finished: kept
        await add(url, created_days=1, status="succeeded", finished_days=1),
    ]
    role = Retention(config.retention, db)

    done = await role.run_once()

    assert done.deleted == 3
    assert await remaining(url) == set(kept)
    assert await query(url, "SELECT * FROM dead_letters WHERE task_id = $1", gone[2]) == []
    assert await query(url, "SELECT * FROM task_attempts WHERE task_id = $1", gone[2]) == []
    # The walk moved past them; the ones it could not delete wait to be looked at again.
    later = {r["task_id"] for r in await query(url, "SELECT task_id FROM retention_later")}
    assert later == set(kept[:3])
    assert (await role.run_once()).read == 0

    # Time passes for the set-aside: the succeeded one's week runs out.
    await query(
        url, "UPDATE tasks SET finished_at = now() - interval '8 days' WHERE id = $1", kept[0]
    )
    await query(url, "UPDATE retention_later SET recheck_at = now() - interval '1 s'")
    again = await role.run_once()
    assert (again.rechecked, again.deleted) == (3, 1)
    assert await remaining(url) == set(kept[1:])


async def test_an_idempotency_key_past_its_ttl_makes_a_new_task(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    body = {"type": "noop", "idempotency_key": "order-42"}
    async with api_client(config, db, streams, metrics) as (client, _):
        first = await (await client.post("/v1/tasks", json=body)).json()
        again = await client.post("/v1/tasks", json=body)
        assert again.status == 200 and (await again.json())["id"] == first["id"]
        await query(
            config.stores.database_url,
            "UPDATE idempotency_keys SET created_at = now() - interval '25 hours'",
        )
        fresh = await client.post("/v1/tasks", json=body)
        assert fresh.status == 201 and (await fresh.json())["id"] != first["id"]
        # The retention pass removes expired keys too (none are left expired now).
    assert (await Retention(config.retention, db).run_once()).keys_expired == 0


async def test_expired_keys_and_old_dead_entries_are_deleted_in_bounded_batches(
    config: Config, db: Database
) -> None:
    url = config.stores.database_url
    config = config_mod.replace(config, retention_batch=2)
    await query(
        url,
        "INSERT INTO idempotency_keys (key, task_id, request_hash, created_at) "
        "SELECT 'k' || i, gen_random_uuid(), '\\x00', now() - interval '2 days' "
        "FROM generate_series(1, 3) i",
    )
    await query(
        url,
        "INSERT INTO dead_entries (priority, entry_id, fields, reason, dead_at) "
        "SELECT 'low', i || '-0', '{}', 'undecodable', now() - interval '31 days' "
        "FROM generate_series(1, 3) i",
    )
    role = Retention(config.retention, db)
    first = await role.run_once()
    assert (first.keys_expired, first.dead_entries_expired, first.more) == (2, 2, True)
    second = await role.run_once()
    assert (second.keys_expired, second.dead_entries_expired) == (1, 1)


# Every statement the janitor's roles run on a pass, with parameters as they run them.
def _janitor_statements(config: Config) -> list[tuple[str, list[Any]]]:
    ages = [7 * DAY_S * 1000, 7 * DAY_S * 1000, 30 * DAY_S * 1000]
    now_ms = int(time.time() * 1000)
    return [
        (sql.RUNNING_BEFORE, [config.lease.vis_timeout_ms, BATCH, uuid.UUID(int=0), None]),
        (sql.SWEEP_BOUND, [uuid.UUID(int=0), BATCH]),
        (sql.STALLED_TASKS, [[uuid.uuid4() for _ in range(100)]]),
        (sql.QUEUE_DEPTHS, []),
        (sql.RETENTION_WALK, [uuid.UUID(int=0), ids.floor(now_ms - ages[0]), BATCH, *ages]),
        (sql.RETENTION_RECHECK, [BATCH, *ages]),
        (sql.EXPIRE_IDEMPOTENCY_KEYS, [DAY_S * 1000, BATCH]),
        (sql.EXPIRE_DEAD_ENTRIES, [30 * DAY_S * 1000, BATCH]),
    ]


def _buffers(plan: Any) -> int:
    node = plan.get("Plan", plan)
    total = int(node.get("Shared Hit Blocks", 0)) + int(node.get("Shared Read Blocks", 0))
    return total


async def test_a_janitor_pass_reads_no_more_with_a_million_old_rows(config: Config) -> None:
    url = config.stores.database_url
    await query(
        url,
        "INSERT INTO tasks (id, type, priority, payload, status, max_attempts, retry_base_ms, "
        "retry_max_ms, retry_jitter_ms, timeout_ms, created_at, finished_at) "
        "SELECT gen_random_uuid(), 't', 'default', '{}', CASE WHEN i % 10 = 0 THEN 'dead' "
        "ELSE 'succeeded' END, 3, 0, 0, 0, 1000, now() - interval '2 days', "
        "now() - interval '1 day' FROM generate_series(1, 1000000) i",
    )
    await query(
        url,
        "INSERT INTO dead_letters (task_id, priority, type, attempt, reason) "
        "SELECT id, 'default', 't', 1, 'attempts_exhausted' FROM tasks WHERE status = 'dead'",
    )
    await query(url, "ANALYZE")
    conn = await asyncpg.connect(url)
    read: dict[str, int] = {}
    try:
        for statement, args in _janitor_statements(config):
            tx = conn.transaction()
            await tx.start()  # EXPLAIN ANALYZE runs the deletes: rolled back after
            raw = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}", *args)
            await tx.rollback()
            read[" ".join(statement.split())[:50]] = _buffers(json.loads(raw)[0])
    finally:
        await conn.close()
    # Bounded by the batch, never by history: a few index pages, plus at most one heap page
    # per row of the batch (the ids here are random, the worst case), against the tens of
    # thousands of pages the million rows fill.
    assert max(read.values()) < 3 * BATCH + 100, read
