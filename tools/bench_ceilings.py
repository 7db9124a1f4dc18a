"""The raw ceilings the benchmark's scenarios are measured against, on the same machine and
in the same run, in batches of 500 through the project's own ``shared.streams`` and
``shared.db``: what Redis and Postgres allow one Python process, and what the least durable
work per task allows one process per core (the services are several processes too).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
import uuid
from concurrent.futures import ProcessPoolExecutor

import asyncpg
import msgspec

from taskstream.services.cli.load import run_async
from taskstream.shared.db import Database
from taskstream.shared.domain import Delivery, NewTask, Outcome
from taskstream.shared.ids import new_id
from taskstream.shared.keys import Keys
from taskstream.shared.streams import Publish, Streams

BATCH = 500
MAX_AHEAD = 10 * BATCH  # how far the durable loop's producer may run ahead of its consumer
CONSUMER = "bench-ceiling"


class Ceilings(msgspec.Struct, kw_only=True):
    redis_msgs_s: float  # XADD → XREADGROUP → XACK, pipelined
    pg_insert_rows_s: float  # INSERT … SELECT FROM unnest
    pg_update_rows_s: float  # UPDATE … FROM unnest
    durable_tasks_s: float  # insert + XADD, then XREADGROUP + claim + complete + XACK
    durable_processes: int  # processes running the durable loop at once


async def measure(
    db: Database, streams: Streams, seconds: float, *, database_url: str, redis_url: str
) -> Ceilings:
    await streams.ensure_groups()
    insert, update = await postgres_batches(database_url, seconds)
    processes = os.cpu_count() or 1
    return Ceilings(
        redis_msgs_s=await redis_loop(streams, seconds),
        pg_insert_rows_s=insert,
        pg_update_rows_s=update,
        durable_tasks_s=await durable_processes(
            processes, seconds, database_url, redis_url, streams.keys.namespace
        ),
        durable_processes=processes,
    )


async def redis_loop(streams: Streams, seconds: float) -> float:
    """Messages/s through XADD (500 pipelined), XREADGROUP COUNT 500 and one XACK of 500."""
    entries = [Publish(priority="low", task_id=new_id(), attempt=1) for _ in range(BATCH)]
    done = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        await streams.publish(entries)
        got = (await streams.read(CONSUMER, {"low": BATCH})).get("low", [])
        done += await streams.ack(("low", d.entry_id) for d in got)
    return done / elapsed


# The plainest multi-row insert of task rows, one round trip per batch.
BENCH_INSERT = """
INSERT INTO tasks (id, type, priority, payload, status, max_attempts, retry_base_ms,
    retry_max_ms, retry_jitter_ms, timeout_ms)
SELECT id, type, priority, payload, 'queued', 1, 0, 0, 0, 1000
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[]) AS i(id, type, priority, payload)
"""

# The plainest multi-row update of task rows (by id and attempt).
BENCH_UPDATE = """
UPDATE tasks t SET status = 'succeeded', finished_at = now(), updated_at = now()
FROM unnest($1::uuid[], $2::int[]) AS c(id, attempt)
WHERE t.id = c.id AND t.attempt = c.attempt
"""


async def postgres_batches(database_url: str, seconds: float) -> tuple[float, float]:
    """Rows/s of a 500-row INSERT from unnest, and of a 500-row UPDATE from unnest, each in
    its own implicit transaction (one commit per statement), on a plain asyncpg connection."""
    types, priorities, attempts = ["noop"] * BATCH, ["default"] * BATCH, [1] * BATCH
    payloads = ["{}"] * BATCH
    inserted = updated = 0
    insert_s = update_s = 0.0
    conn = await asyncpg.connect(database_url)
    try:
        while insert_s + update_s < seconds:
            ids = [new_id() for _ in range(BATCH)]
            t0 = time.perf_counter()
            status = await conn.execute(BENCH_INSERT, ids, types, priorities, payloads)
            inserted += int(status.rsplit(" ", 1)[1])
            t1 = time.perf_counter()
            status = await conn.execute(BENCH_UPDATE, ids, attempts)
            updated += int(status.rsplit(" ", 1)[1])
            insert_s += t1 - t0
            update_s += time.perf_counter() - t1
    finally:
        await conn.close()
    return inserted / insert_s, updated / update_s


def _task(task_id: uuid.UUID) -> NewTask:
    return NewTask(
        id=task_id,
        type="noop",
        priority="default",
        payload=b"{}",
        max_attempts=5,
        retry_base_ms=500,
        retry_max_ms=30_000,
        retry_jitter_ms=500,
        timeout_ms=300_000,
        idempotency_key=None,
        request_hash=None,
        run_at=None,
    )


async def durable_processes(
    n: int, seconds: float, database_url: str, redis_url: str, namespace: str
) -> float:
    """Tasks/s of ``n`` processes running ``durable_loop`` at once on one stream."""
    start_at = time.time() + 3.0  # every process has imported and connected by then
    args = (seconds, database_url, redis_url, namespace, start_at)
    loop = asyncio.get_running_loop()
    spawn = multiprocessing.get_context("spawn")  # never fork a process running an event loop
    with ProcessPoolExecutor(n, mp_context=spawn) as pool:
        rates = [loop.run_in_executor(pool, _durable_process, i, *args) for i in range(n)]
        return sum(await asyncio.gather(*rates))


def _durable_process(
    i: int, seconds: float, database_url: str, redis_url: str, namespace: str, start_at: float
) -> float:
    async def main() -> float:
        db = await Database.connect(database_url, min_size=2, max_size=2)
        streams = Streams.connect(redis_url, Keys(namespace))
        try:
            await asyncio.sleep(max(0.0, start_at - time.time()))
            return await durable_loop(db, streams, seconds, consumer=f"{CONSUMER}-{i}")
        finally:
            await streams.close()
            await db.close()

    return run_async(main)


async def durable_loop(
    db: Database, streams: Streams, seconds: float, *, consumer: str = CONSUMER
) -> float:
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
            tasks = [_task(new_id()) for _ in range(BATCH)]
            await db.insert_tasks(tasks)
            await streams.publish(
                [Publish(priority="default", task_id=t.id, attempt=1) for t in tasks]
            )
            produced += BATCH

    async def consume() -> None:
        nonlocal consumed
        while time.perf_counter() < stop:
            got = (await streams.read(consumer, {"default": BATCH})).get("default", [])
            deliveries = [d for d in got if isinstance(d, Delivery)]
            if not deliveries:
                await asyncio.sleep(0.001)
                continue
            claimed = await db.claim(
                [d.task_id for d in deliveries],
                [d.attempt for d in deliveries],
                [d.entry_id for d in deliveries],
                consumer,
            )
            outcomes = [Outcome(task_id=t.id, attempt=t.attempt, kind="succeeded") for t in claimed]
            consumed += len(await db.complete(outcomes))
            await streams.ack(("default", d.entry_id) for d in deliveries)

    start = time.perf_counter()
    await asyncio.gather(produce(), consume())
    return consumed / (time.perf_counter() - start)
