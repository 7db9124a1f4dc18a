"""The honest ceilings: what this machine does with the plain clients (redis-py, asyncpg) and
a minimal table, none of taskstream's code in the way, measured in the same run as the
scenarios so ratios compare like with like.

- the Redis stream loop: XADD 500 (one pipeline), XREADGROUP COUNT 500, one XACK of 500;
- Postgres: a 500-row INSERT from unnest, the same rows by COPY, a 500-row UPDATE from unnest;
- the lean durable loop (the performance issue's): a minimal table ``(id uuid primary key,
  type, priority, payload jsonb, status, attempt, created_at, started_at, finished_at)``;
  one process inserts batches of 500 with unnest and XADDs them, one process does
  XREADGROUP 500 → one fenced UPDATE … FROM unnest to running → one fenced UPDATE to
  succeeded → XACK. One process per core (this machine has two), ``synchronous_commit`` on.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import asyncpg
import msgspec
import redis.asyncio as aioredis

from taskstream.shared.ids import new_id

BATCH = 500
AHEAD = 20 * BATCH  # how far the lean loop's producer may run ahead of its consumer
GROUP = "lean"

LEAN_TABLE = """
CREATE TABLE IF NOT EXISTS lean_tasks (
    id uuid PRIMARY KEY, type text NOT NULL, priority text NOT NULL, payload jsonb NOT NULL,
    status text NOT NULL, attempt integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(), started_at timestamptz,
    finished_at timestamptz
)
"""
LEAN_INSERT = """
INSERT INTO lean_tasks (id, type, priority, payload, status)
SELECT id, type, priority, payload, 'queued'
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[]) AS i(id, type, priority, payload)
"""
LEAN_CLAIM = """
UPDATE lean_tasks t SET status = 'running', started_at = now()
FROM unnest($1::uuid[], $2::int[]) AS c(id, attempt)
WHERE t.id = c.id AND t.attempt = c.attempt AND t.status = 'queued'
RETURNING t.id, t.attempt
"""
LEAN_DONE = """
UPDATE lean_tasks t SET status = 'succeeded', finished_at = now()
FROM unnest($1::uuid[], $2::int[]) AS c(id, attempt)
WHERE t.id = c.id AND t.attempt = c.attempt AND t.status = 'running'
"""
PLAIN_UPDATE = """
UPDATE lean_tasks t SET status = 'succeeded', finished_at = now()
FROM unnest($1::uuid[]) AS c(id) WHERE t.id = c.id
"""


class RawCeilings(msgspec.Struct, kw_only=True):
    redis_msgs_s: float
    pg_insert_rows_s: float
    pg_copy_rows_s: float
    pg_update_rows_s: float
    lean_tasks_s: float
    lean_processes: int


async def measure(database_url: str, redis_url: str, seconds: float) -> RawCeilings:
    key = f"raw-ceiling:{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(LEAN_TABLE)
        insert, copy, update = await _postgres(conn, seconds)
        await conn.execute("TRUNCATE lean_tasks")
    finally:
        await conn.close()
    redis_rate = await _redis_loop(redis_url, key, seconds)
    lean = await _lean_loop(database_url, redis_url, key + ":lean", seconds)
    return RawCeilings(
        redis_msgs_s=redis_rate,
        pg_insert_rows_s=insert,
        pg_copy_rows_s=copy,
        pg_update_rows_s=update,
        lean_tasks_s=lean,
        lean_processes=2,
    )


def _rows() -> tuple[list[uuid.UUID], list[str], list[str], list[str]]:
    return [new_id() for _ in range(BATCH)], ["noop"] * BATCH, ["default"] * BATCH, ["{}"] * BATCH


async def _postgres(conn: asyncpg.Connection, seconds: float) -> tuple[float, float, float]:
    inserted = copied = updated = 0
    spent = [0.0, 0.0, 0.0]
    while sum(spent) < seconds:
        ids, types, priorities, payloads = _rows()
        t0 = time.perf_counter()
        await conn.execute(LEAN_INSERT, ids, types, priorities, payloads)
        t1 = time.perf_counter()
        await conn.execute(PLAIN_UPDATE, ids)
        t2 = time.perf_counter()
        copy_rows = [(new_id(), "noop", "default", "{}", "queued") for _ in range(BATCH)]
        await conn.copy_records_to_table(
            "lean_tasks",
            records=copy_rows,
            columns=["id", "type", "priority", "payload", "status"],
        )
        t3 = time.perf_counter()
        inserted, updated, copied = inserted + BATCH, updated + BATCH, copied + BATCH
        spent[0] += t1 - t0
        spent[1] += t2 - t1
        spent[2] += t3 - t2
    return inserted / spent[0], copied / spent[2], updated / spent[1]


async def _redis_loop(redis_url: str, key: str, seconds: float) -> float:
    r = aioredis.Redis.from_url(redis_url)
    try:
        await r.xgroup_create(key, GROUP, id="0", mkstream=True)
        fields = {"t": str(new_id()), "a": "1"}
        done = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            pipe = r.pipeline(transaction=False)
            for _ in range(BATCH):
                pipe.xadd(key, fields)  # type: ignore[arg-type]
            await pipe.execute()
            reply: Any = await r.xreadgroup(GROUP, "c", {key: ">"}, count=BATCH)
            ids = [i for _, entries in reply for i, _ in entries]
            done += int(await r.xack(key, GROUP, *ids))
        return done / elapsed
    finally:
        await r.delete(key)
        await r.aclose()


async def _lean_loop(database_url: str, redis_url: str, key: str, seconds: float) -> float:
    """Tasks/s through the lean loop: a producer process and a consumer process."""
    r = aioredis.Redis.from_url(redis_url)
    await r.xgroup_create(key, GROUP, id="0", mkstream=True)
    start_at = time.time() + 3.0  # both processes are connected by then
    loop = asyncio.get_running_loop()
    spawn = multiprocessing.get_context("spawn")  # never fork a process running an event loop
    try:
        with ProcessPoolExecutor(2, mp_context=spawn) as pool:
            args = (database_url, redis_url, key, seconds, start_at)
            _, consumed = await asyncio.gather(
                loop.run_in_executor(pool, _lean_process, "produce", *args),
                loop.run_in_executor(pool, _lean_process, "consume", *args),
            )
        return consumed
    finally:
        await r.delete(key)
        await r.aclose()
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("DROP TABLE IF EXISTS lean_tasks")
        finally:
            await conn.close()


def _lean_process(
    role: str, database_url: str, redis_url: str, key: str, seconds: float, start_at: float
) -> float:
    async def main() -> float:
        conn = await asyncpg.connect(database_url)
        r = aioredis.Redis.from_url(redis_url)
        try:
            await asyncio.sleep(max(0.0, start_at - time.time()))
            if role == "produce":
                return await _produce(conn, r, key, seconds)
            return await _consume(conn, r, key, seconds)
        finally:
            await r.aclose()
            await conn.close()

    return asyncio.run(main())


async def _produce(conn: asyncpg.Connection, r: aioredis.Redis, key: str, seconds: float) -> float:
    produced = 0
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        info: Any = await r.xinfo_groups(key)
        if info and int(info[0].get("lag") or 0) >= AHEAD:
            await asyncio.sleep(0.001)
            continue
        ids, types, priorities, payloads = _rows()
        await conn.execute(LEAN_INSERT, ids, types, priorities, payloads)
        pipe = r.pipeline(transaction=False)
        for task_id in ids:
            pipe.xadd(key, {"t": str(task_id), "a": "1"})
        await pipe.execute()
        produced += BATCH
    return produced / seconds


async def _consume(conn: asyncpg.Connection, r: aioredis.Redis, key: str, seconds: float) -> float:
    consumed = 0
    start = time.perf_counter()
    stop = start + seconds
    while time.perf_counter() < stop:
        reply: Any = await r.xreadgroup(GROUP, "lean", {key: ">"}, count=BATCH, block=100)
        entries = [(i, f) for _, items in reply or () for i, f in items]
        if not entries:
            continue
        ids = [uuid.UUID(f[b"t"].decode()) for _, f in entries]
        attempts = [int(f[b"a"]) for _, f in entries]
        claimed = await conn.fetch(LEAN_CLAIM, ids, attempts)
        await conn.execute(LEAN_DONE, [c["id"] for c in claimed], [c["attempt"] for c in claimed])
        await r.xack(key, GROUP, *[i for i, _ in entries])
        consumed += len(claimed)
    return consumed / (time.perf_counter() - start)
