"""The raw ceilings the benchmark's scenarios are measured against, on the same machine and
in the same run: what Redis, Postgres, and the least durable work per task allow from one
Python process, in batches of 500, through the project's own ``shared.streams`` and
``shared.db``.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import msgspec

from shared.db import Database, Outcome
from shared.models import Delivery, NewTask
from shared.streams import Publish, Streams

BATCH = 500
MAX_AHEAD = 10 * BATCH  # how far the durable loop's producer may run ahead of its consumer
CONSUMER = "bench-ceiling"


class Ceilings(msgspec.Struct, kw_only=True):
    redis_msgs_s: float  # XADD → XREADGROUP → XACK, pipelined
    pg_insert_rows_s: float  # INSERT … SELECT FROM unnest
    pg_update_rows_s: float  # UPDATE … FROM unnest
    durable_tasks_s: float  # insert + XADD, then XREADGROUP + claim + complete + XACK


async def measure(db: Database, streams: Streams, seconds: float) -> Ceilings:
    await streams.ensure_groups()
    insert, update = await postgres_batches(db, seconds)
    return Ceilings(
        redis_msgs_s=await redis_loop(streams, seconds),
        pg_insert_rows_s=insert,
        pg_update_rows_s=update,
        durable_tasks_s=await durable_loop(db, streams, seconds),
    )


async def redis_loop(streams: Streams, seconds: float) -> float:
    """Messages/s through XADD (500 pipelined), XREADGROUP COUNT 500 and one XACK of 500."""
    entries = [Publish(priority="low", task_id=uuid.uuid4(), attempt=1) for _ in range(BATCH)]
    done = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        await streams.publish(entries)
        got = (await streams.read(CONSUMER, {"low": BATCH})).get("low", [])
        done += await streams.ack(("low", d.entry_id) for d in got)
    return done / elapsed


async def postgres_batches(db: Database, seconds: float) -> tuple[float, float]:
    """Rows/s of a 500-row INSERT from unnest, and of a 500-row UPDATE from unnest, each in
    its own implicit transaction (one commit per statement)."""
    types, priorities, attempts = ["noop"] * BATCH, ["default"] * BATCH, [1] * BATCH
    inserted = updated = 0
    insert_s = update_s = 0.0
    while insert_s + update_s < seconds:
        ids = [uuid.uuid4() for _ in range(BATCH)]
        t0 = time.perf_counter()
        inserted += await db.bench_insert(ids, types, priorities)
        t1 = time.perf_counter()
        updated += await db.bench_update(ids, attempts)
        insert_s += t1 - t0
        update_s += time.perf_counter() - t1
    return inserted / insert_s, updated / update_s


def _task(task_id: uuid.UUID) -> NewTask:
    return NewTask(
        id=task_id,
        type="noop",
        priority="default",
        payload=b"{}",
        status="queued",
        max_attempts=5,
        retry_base_ms=500,
        retry_max_ms=30_000,
        retry_jitter_ms=500,
        timeout_ms=300_000,
        idempotency_key=None,
        request_hash=None,
        run_at=None,
    )


async def durable_loop(db: Database, streams: Streams, seconds: float) -> float:
    """Tasks/s of the least durable work per task, producer and consumer side by side in one
    process: insert 500 rows (INSERT_TASKS) and XADD them; XREADGROUP 500, one fenced claim
    (CLAIM), one fenced completion (COMPLETE_SUCCEEDED), one XACK."""
    produced = consumed = 0
    stop = time.perf_counter() + seconds

    async def produce() -> None:
        nonlocal produced
        while time.perf_counter() < stop:
            if produced - consumed >= MAX_AHEAD:
                await asyncio.sleep(0.001)
                continue
            tasks = [_task(uuid.uuid4()) for _ in range(BATCH)]
            await db.insert_tasks(tasks)
            await streams.publish(
                [Publish(priority="default", task_id=t.id, attempt=1) for t in tasks]
            )
            produced += BATCH

    async def consume() -> None:
        nonlocal consumed
        while time.perf_counter() < stop:
            got = (await streams.read(CONSUMER, {"default": BATCH})).get("default", [])
            deliveries = [d for d in got if isinstance(d, Delivery)]
            if not deliveries:
                await asyncio.sleep(0.001)
                continue
            claimed = await db.claim(
                [d.task_id for d in deliveries],
                [d.attempt for d in deliveries],
                [d.entry_id for d in deliveries],
                CONSUMER,
            )
            outcomes = [Outcome(task_id=t.id, attempt=t.attempt, kind="succeeded") for t in claimed]
            consumed += len(await db.complete(outcomes))
            await streams.ack(("default", d.entry_id) for d in deliveries)

    start = time.perf_counter()
    await asyncio.gather(produce(), consume())
    return consumed / (time.perf_counter() - start)
