"""``python -m tools console-bench``: how fast the console's pages answer with a million tasks.

Creates a fresh database, inserts ``--tasks`` tasks (default 1,000,000) with
``generate_series`` (time-ordered ids over the last week, the statuses, dead letters, failed
attempts and idempotency keys a busy system has), serves ingest with its console in this
process on a free local port, and times each main page (``--runs`` requests after warm-up):
median, 95th percentile and worst, end to end over HTTP on localhost. The database and the
Redis namespace are removed at the end. Not a test: a measurement, reported in the README.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import time
import uuid
from collections.abc import Sequence

import aiohttp
import asyncpg
from aiohttp import web
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from taskstream.services.ingest.app import build_app
from taskstream.services.ingest.publisher import Publisher
from taskstream.shared import config as config_mod
from taskstream.shared import db as db_mod
from taskstream.shared import metrics as metrics_mod
from taskstream.shared.db import Database
from taskstream.shared.keys import Keys
from taskstream.shared.streams import Publish, Streams

BATCH = 100_000
STEP_MS = 600  # between two tasks' creation times: a million tasks span about a week

# One batch of tasks: $1 first index, $2 last index, $3 the first task's creation time (ms),
# $4 the total. 1 % dead, 0.1 % retrying, 0.2 % cancelled, the newest 2,000 queued, the rest
# succeeded; every tenth has an idempotency key.
INSERT_TASKS = """
INSERT INTO tasks (id, type, priority, payload, status, attempt, max_attempts, retry_base_ms,
    retry_max_ms, retry_jitter_ms, timeout_ms, idempotency_key, run_at, created_at,
    updated_at, queued_at, started_at, finished_at, consumer, last_error)
SELECT
    (lpad(to_hex($3::bigint + i * 600), 12, '0') || '7' || substr(h, 1, 3) || '8'
        || substr(h, 4, 15))::uuid,
    (ARRAY['email', 'sms', 'report', 'charge', 'noop'])[i % 5 + 1],
    (ARRAY['critical', 'high', 'high', 'high', 'default', 'default', 'default', 'default',
        'default', 'low'])[i % 10 + 1],
    jsonb_build_object('order', i, 'note', repeat('x', 40)),
    st,
    CASE WHEN st = 'dead' THEN 3 ELSE 1 END,
    3, 500, 30000, 500, 300000,
    CASE WHEN i % 10 = 0 THEN 'key-' || i END,
    at, at, at + interval '1 second', at,
    CASE WHEN st IN ('succeeded', 'dead') THEN at + interval '10 ms' END,
    CASE WHEN st IN ('succeeded', 'dead', 'cancelled') THEN at + interval '50 ms' END,
    CASE WHEN st IN ('succeeded', 'dead') THEN 'bench-host-1' END,
    CASE WHEN st IN ('dead', 'retrying') THEN jsonb_build_object('type', 'ValueError',
        'message', 'card declined for order ' || i,
        'traceback', 'Traceback (most recent call last):\n  File "app.py", line 1\nValueError')
    END
FROM (
    SELECT i, md5(i::text) AS h,
        to_timestamp(($3::bigint + i * 600) / 1000.0) AS at,
        CASE WHEN i > $4 - 2000 THEN 'queued'
             WHEN i % 100 = 7 THEN 'dead'
             WHEN i % 1000 = 3 THEN 'retrying'
             WHEN i % 500 = 11 THEN 'cancelled'
             ELSE 'succeeded' END AS st
    FROM generate_series($1::bigint, $2::bigint) AS i
) AS g
"""
FILL_REST = [
    """INSERT INTO idempotency_keys (key, task_id, request_hash, created_at)
       SELECT idempotency_key, id, '\\x00'::bytea, created_at FROM tasks
       WHERE idempotency_key IS NOT NULL""",
    """INSERT INTO task_attempts (task_id, attempt, outcome, consumer, started_at, finished_at,
           error)
       SELECT id, a, 'failed', 'bench-host-1', created_at, created_at + interval '20 ms',
           last_error
       FROM tasks, generate_series(1, 3) AS a
       WHERE status = 'dead' OR (status = 'retrying' AND a = 1)""",
    """INSERT INTO dead_letters (task_id, priority, type, attempt, reason, error, dead_at)
       SELECT id, priority, type, attempt, 'attempts_exhausted', last_error, finished_at
       FROM tasks WHERE status = 'dead'""",
    "VACUUM ANALYZE",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _fill(url: str, n: int) -> dict[str, str]:
    """The tasks and what hangs off them; some ids and a key for the page list."""
    conn = await asyncpg.connect(url)
    try:
        first_ms = int(time.time() * 1000) - n * STEP_MS
        started = time.monotonic()
        for lo in range(1, n + 1, BATCH):
            await conn.execute(INSERT_TASKS, lo, min(n, lo + BATCH - 1), first_ms, n)
            print(f"  {min(n, lo + BATCH - 1):>9,} tasks ({time.monotonic() - started:.0f} s)")
        for statement in FILL_REST:
            await conn.execute(statement)
        total = await conn.fetchval(
            "SELECT reltuples::bigint FROM pg_class WHERE relname = 'tasks'"
        )
        dead = await conn.fetchval(
            "SELECT id FROM tasks WHERE status = 'dead' AND id > (SELECT id FROM tasks "
            "ORDER BY id OFFSET $1 LIMIT 1) ORDER BY id LIMIT 1",
            n // 2,
        )
        middle = await conn.fetchval("SELECT id FROM tasks ORDER BY id OFFSET $1 LIMIT 1", n // 2)
        queued = await conn.fetch(
            "SELECT id, priority FROM tasks WHERE status = 'queued' ORDER BY id DESC LIMIT 2000"
        )
        size = await conn.fetchval("SELECT pg_size_pretty(pg_total_relation_size('tasks'))")
    finally:
        await conn.close()
    print(f"  filled in {time.monotonic() - started:.0f} s: ~{total:,} tasks, table {size}")
    hour_ms = first_ms + (n // 2) * STEP_MS
    return {
        "dead": str(dead),
        "middle": str(middle),
        "since": time.strftime("%Y-%m-%dT%H:%M", time.gmtime(hour_ms / 1000)),
        "until": time.strftime("%Y-%m-%dT%H:%M", time.gmtime(hour_ms / 1000 + 3600)),
        "key": f"key-{(n // 20) * 10}",
        "queued": ",".join(f"{r['id']}/{r['priority']}" for r in queued),
    }


PAGES = [
    ("overview", "/ui/"),
    ("overview, live part (every 3 s)", "/ui/overview/live"),
    ("tasks, newest", "/ui/tasks"),
    ("tasks, type + priority", "/ui/tasks?type=charge&priority=high"),
    ("tasks, status dead (1 %)", "/ui/tasks?status=dead"),
    ("tasks, status retrying (0.1 %)", "/ui/tasks?status=retrying"),
    ("tasks, a one-hour range mid-table", "/ui/tasks?since={since}&until={until}"),
    ("tasks, a page from the middle (cursor)", "/ui/tasks?cursor={middle}"),
    ("tasks, lookup by idempotency key", "/ui/tasks?lookup={key}"),
    ("task page (dead, 3 attempts)", "/ui/tasks/{dead}"),
    ("dead letters, newest", "/ui/dlq"),
    ("dead letters, type filter", "/ui/dlq?type=charge"),
    ("queues and consumers (100 pending)", "/ui/queues"),
    ("tasks, status scheduled (no such task: scans the table)", "/ui/tasks?status=scheduled"),
]


async def _time(session: aiohttp.ClientSession, url: str, runs: int) -> tuple[int, list[float]]:
    times: list[float] = []
    status = 0
    for i in range(runs + 3):
        started = time.perf_counter()
        async with session.get(url, allow_redirects=False) as answer:
            await answer.read()
            status = answer.status
        if i >= 3:
            times.append((time.perf_counter() - started) * 1000)
    return status, times


async def bench(server_url: str, redis_url: str, n: int, runs: int) -> int:
    name = f"ts_console_bench_{uuid.uuid4().hex[:8]}"
    url = db_mod.with_database(server_url, name)
    namespace = f"console-bench-{uuid.uuid4().hex[:8]}"
    await db_mod.create_database(url)
    await db_mod.migrate(url)
    config = config_mod.load({}, database_url=url, redis_url=redis_url, namespace=namespace)
    db = await Database.connect(url, min_size=2, max_size=10)
    streams = Streams.connect(redis_url, Keys(namespace))
    runner: web.AppRunner | None = None
    try:
        print(f"console-bench: filling {name} with {n:,} tasks")
        marks = await _fill(url, n)
        await streams.ensure_groups()
        queued = [q.split("/") for q in marks.pop("queued").split(",") if q]
        await streams.publish(
            [Publish(priority=p, task_id=uuid.UUID(t), attempt=1) for t, p in queued]
        )
        await streams.read("bench-host-1", dict.fromkeys(("high", "default"), 50))
        metrics = metrics_mod.build(InMemoryMetricReader())
        publisher = Publisher(streams, metrics, retry_ms=1000, db=db)
        app = build_app(config, db, streams, metrics, publisher)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = _free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        base = f"http://127.0.0.1:{port}"
        print(f"\n{runs} requests per page after 3 warm-up, end to end over HTTP, in ms\n")
        print("| page | median | p95 | worst | status |\n| --- | ---: | ---: | ---: | ---: |")
        worst_main = 0.0
        async with aiohttp.ClientSession() as session:
            for label, path in PAGES:
                status, times = await _time(session, base + path.format(**marks), runs)
                times.sort()
                p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
                median = statistics.median(times)
                print(f"| {label} | {median:.1f} | {p95:.1f} | {times[-1]:.1f} | {status} |")
                if "scans the table" not in label:
                    worst_main = max(worst_main, median)
        print(f"\nslowest median of the main pages: {worst_main:.1f} ms (target < 100 ms)")
        return 0
    finally:
        if runner is not None:
            await runner.cleanup()
        await streams.delete_namespace()
        await streams.close()
        await db.close()
        await db_mod.drop_database(url)


def console_bench_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools console-bench", description=__doc__)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/taskstream"),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    args = parser.parse_args(list(argv))
    if args.tasks < 10_000:
        print("console-bench: --tasks must be at least 10000", file=sys.stderr)
        return 2
    return asyncio.run(bench(args.database_url, args.redis_url, args.tasks, args.runs))
