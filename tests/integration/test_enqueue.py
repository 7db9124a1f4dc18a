"""Transactional enqueue: ``taskstream.enqueue(conn, …)`` inside the application's own
transaction. Rolled back: no task, no stream entry. Committed: published promptly by the
watcher's outbox role (woken by the transaction's notification), and run once, also when the
watcher was not running at the commit or died between its publish and its commit."""

from __future__ import annotations

import asyncio
import datetime as dt
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest
import redis.asyncio as aioredis

import taskstream
from taskstream.services.executor.executor import Executor
from taskstream.services.watcher.watcher import Watcher
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.db.listen import OUTBOX_CHANNEL
from taskstream.shared.domain import Ready
from taskstream.shared.errors import StoreError
from taskstream.shared.handlers import Context, Registry
from taskstream.shared.keys import Keys
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.helpers import api_client, wait_for
from tests.helpers import query as q


class Welcome(msgspec.Struct):
    user_id: int
    lang: str = "en"


@pytest.fixture
async def app_conn(config: Config) -> AsyncIterator[asyncpg.Connection]:
    """The application's own connection to the shared Postgres."""
    conn = await asyncpg.connect(config.stores.database_url)
    yield conn
    await conn.close()


@pytest.fixture
async def stream_entries(config: Config, streams: Streams) -> AsyncIterator[Any]:
    client = aioredis.from_url(config.stores.redis_url)
    keys = Keys(config.stores.namespace)

    async def entries(priority: str = "default") -> list[tuple[int, str]]:
        """(entry time in ms, task id) of every entry on a stream."""
        rows: Any = await client.xrange(keys.stream(priority))
        return [(int(eid.split(b"-")[0]), fields[b"t"].decode()) for eid, fields in rows]

    yield entries
    await client.aclose()


def counting_registry(runs: list[Any]) -> Registry:
    async def welcome(payload: Any, ctx: Context) -> None:
        runs.append((payload, ctx.attempt))

    registry = Registry()
    registry.register("email.welcome", welcome)
    return registry


async def test_a_rolled_back_transaction_leaves_no_task_and_no_entry(
    config: Config, db: Database, streams: Streams, metrics: Metrics,
    app_conn: asyncpg.Connection, stream_entries: Any,
) -> None:  # fmt: skip
    url = config.stores.database_url
    heard: list[str] = []
    listener = await asyncpg.connect(url)
    await listener.add_listener(OUTBOX_CHANNEL, lambda *args: heard.append(args[3]))
    await app_conn.execute("CREATE TABLE users (id int)")
    try:
        with pytest.raises(RuntimeError):
            async with app_conn.transaction():
                await app_conn.execute("INSERT INTO users VALUES (42)")
                done = await taskstream.enqueue(app_conn, "email.welcome", {"user_id": 42})
                assert done.created and done.status == "queued"
                raise RuntimeError("the application changed its mind")
        report = await Watcher(config, db, streams, metrics).run_once()
        assert report.enqueued == 0
        for table in ("users", "tasks", "outbox", "idempotency_keys"):
            assert await q(url, f"SELECT * FROM {table}") == []
        assert await stream_entries() == []
        # A committed one is heard: the rolled-back one's notification never was.
        await taskstream.enqueue(app_conn, "email.welcome", {"user_id": 43})
        await wait_for(lambda: _at_least(heard, 1))
        assert len(heard) == 1
    finally:
        await listener.close()


async def _at_least(items: list[str], n: int) -> bool:
    return len(items) >= n


async def test_a_committed_task_is_published_and_runs_once(
    config: Config, db: Database, streams: Streams, metrics: Metrics,
    app_conn: asyncpg.Connection, stream_entries: Any,
) -> None:  # fmt: skip
    runs: list[Any] = []
    async with app_conn.transaction():
        done = await taskstream.enqueue(
            app_conn, "email.welcome", Welcome(user_id=42), priority="high", max_attempts=2
        )
    report = await Watcher(config, db, streams, metrics).run_once()
    assert report.enqueued == 1
    assert [t for _, t in await stream_entries("high")] == [str(done.id)]
    await Executor(config, db, streams, counting_registry(runs), metrics, consumer="c").run_once()
    assert runs == [({"user_id": 42, "lang": "en"}, 1)]
    view = await db.get_task(done.id)
    assert view is not None and view.status == "succeeded" and view.max_attempts == 2
    assert await q(config.stores.database_url, "SELECT * FROM outbox") == []


async def test_a_commit_while_no_watcher_runs_is_published_when_one_starts(
    config: Config, db: Database, streams: Streams, metrics: Metrics,
    app_conn: asyncpg.Connection, stream_entries: Any,
) -> None:  # fmt: skip
    """The watcher is down between the commit and the publish: the outbox row waits, and the
    watcher that starts later publishes it (woken by its first connection, not a notification:
    that one reached nobody)."""
    runs: list[Any] = []
    async with app_conn.transaction():
        done = await taskstream.enqueue(app_conn, "email.welcome", {"user_id": 1})
    await asyncio.sleep(0.05)
    assert await stream_entries() == []
    assert len(await q(config.stores.database_url, "SELECT * FROM outbox")) == 1

    stop = asyncio.Event()
    watcher = Watcher(config, db, streams, metrics)
    running = asyncio.create_task(watcher.run(stop))
    try:
        await wait_for(lambda: _published(stream_entries, 1))
    finally:
        stop.set()
        await running
    await Executor(config, db, streams, counting_registry(runs), metrics, consumer="c").run_once()
    assert [p for p, _ in runs] == [{"user_id": 1}]
    view = await db.get_task(done.id)
    assert view is not None and view.status == "succeeded"


async def _published(entries: Any, n: int) -> bool:
    return len(await entries()) >= n


async def test_a_watcher_dying_between_its_publish_and_its_commit_makes_a_duplicate_that_is_fenced(
    config: Config, db: Database, streams: Streams, metrics: Metrics,
    app_conn: asyncpg.Connection, stream_entries: Any,
) -> None:  # fmt: skip
    runs: list[Any] = []
    done = await taskstream.enqueue(app_conn, "email.welcome", {"user_id": 5})  # autocommit
    watcher = Watcher(config, db, streams, metrics)

    async def publish_then_die(rows: list[Ready]) -> None:
        await watcher.outbox._release.publish(rows)
        raise StoreError("the watcher died before its commit")

    with pytest.raises(StoreError):
        await db.drain_enqueued(100, publish_then_die)
    assert len(await q(config.stores.database_url, "SELECT * FROM outbox")) == 1
    assert (await watcher.run_once()).enqueued == 1  # the restarted watcher, once more
    assert [t for _, t in await stream_entries()] == [str(done.id)] * 2
    await Executor(config, db, streams, counting_registry(runs), metrics, consumer="c").run_once()
    assert len(runs) == 1  # the second entry found the task no longer queued
    view = await db.get_task(done.id)
    assert view is not None and view.status == "succeeded"


async def test_commit_to_stream_p99_is_within_100_ms(
    config: Config, db: Database, streams: Streams, metrics: Metrics,
    app_conn: asyncpg.Connection, stream_entries: Any,
) -> None:  # fmt: skip
    n = 200
    stop = asyncio.Event()
    watcher = Watcher(config, db, streams, metrics)
    running = asyncio.create_task(watcher.run(stop))
    committed: dict[str, float] = {}
    try:
        await wait_for(lambda: _listening(watcher))
        for i in range(n):
            async with app_conn.transaction():
                done = await taskstream.enqueue(app_conn, "email.welcome", {"user_id": i})
            committed[str(done.id)] = time.time() * 1000
        await wait_for(lambda: _published(stream_entries, n), timeout=30)
    finally:
        stop.set()
        await running
    # Entry ids carry Redis's clock in ms (this machine's clock too): commit to stream.
    latencies = sorted(max(0.0, ms - committed[t]) for ms, t in await stream_entries())
    p50, p99 = statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]
    print(f"enqueue commit to stream over {n}: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
          f"max {latencies[-1]:.1f} ms")  # fmt: skip
    assert len(latencies) == n
    assert p99 <= 100


async def _listening(watcher: Watcher) -> bool:
    listener = watcher.outbox.listener
    return listener is not None and listener.listening


async def test_enqueue_takes_the_same_options_and_keys_as_http(
    config: Config, db: Database, streams: Streams, metrics: Metrics,
    app_conn: asyncpg.Connection,
) -> None:  # fmt: skip
    body = {"user_id": 7}
    at = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    async with app_conn.transaction():
        first = await taskstream.enqueue(
            app_conn, "email.welcome", body, idempotency_key="signup-7", run_at=at,
            backoff={"base_ms": 100}, timeout_ms=5000,
        )  # fmt: skip
    assert first.created and first.status == "scheduled"
    # The same key and body over HTTP is a replay of it: the request digests agree.
    async with api_client(config, db, streams, metrics) as (client, _):
        resp = await client.post(
            "/v1/tasks",
            json={"type": "email.welcome", "payload": body, "idempotency_key": "signup-7",
                  "run_at": at.isoformat(), "backoff": {"base_ms": 100}, "timeout_ms": 5000},
        )  # fmt: skip
        assert resp.status == 200 and (await resp.json())["id"] == str(first.id)
    again = await taskstream.enqueue(
        app_conn, "email.welcome", body, idempotency_key="signup-7", run_at=at,
        backoff={"base_ms": 100}, timeout_ms=5000,
    )  # fmt: skip
    assert (again.id, again.created) == (first.id, False)
    with pytest.raises(taskstream.SubmitError) as conflict:
        await taskstream.enqueue(app_conn, "email.welcome", {"user_id": 8},
                                 idempotency_key="signup-7")  # fmt: skip
    assert conflict.value.code == "idempotency_conflict" and conflict.value.status == 409
    [row] = await q(config.stores.database_url, "SELECT * FROM tasks")
    assert (row["retry_base_ms"], row["timeout_ms"], row["status"]) == (100, 5000, "scheduled")
    assert len(await q(config.stores.database_url, "SELECT * FROM due")) == 1


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"priority": "urgent"}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"delay_ms": 10, "run_at": "2030-01-01T00:00:00Z"}, "delay_ms"),
        ({"unique": {"states": ["queued"]}}, "unique.states"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_a_bad_enqueue_raises_naming_the_field_and_stores_nothing(
    config: Config, app_conn: asyncpg.Connection, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(taskstream.SubmitError) as info:
        await taskstream.enqueue(app_conn, "email.welcome", {}, **options)
    assert info.value.field == field and info.value.status == 422
    assert await q(config.stores.database_url, "SELECT * FROM tasks") == []


async def test_a_payload_that_is_not_json_or_holds_nul_is_refused(
    app_conn: asyncpg.Connection,
) -> None:
    with pytest.raises(taskstream.SubmitError) as info:
        await taskstream.enqueue(app_conn, "t", {"when": object()})
    assert info.value.field == "payload"
    with pytest.raises(taskstream.SubmitError) as info:
        await taskstream.enqueue(app_conn, "t", {"k": "a\x00b"})
    assert info.value.field == "payload"


async def test_enqueue_needs_a_connection_not_a_pool(config: Config) -> None:
    pool = await asyncpg.create_pool(config.stores.database_url, min_size=1, max_size=1)
    try:
        with pytest.raises(TypeError, match="asyncpg connection"):
            await taskstream.enqueue(pool, "t", {})
        async with pool.acquire() as conn:  # a pooled connection is fine
            assert (await taskstream.enqueue(conn, "t", {})).created
    finally:
        await pool.close()


async def test_unique_enqueues_from_fifty_concurrent_transactions_make_one_task(
    config: Config,
) -> None:
    url = config.stores.database_url
    pool = await asyncpg.create_pool(url, min_size=25, max_size=25)

    async def signup(i: int) -> taskstream.Enqueued:
        async with pool.acquire() as conn, conn.transaction():
            return await taskstream.enqueue(
                conn, "email.welcome", {"user_id": 99, "n": i},
                unique={"by": ["payload.user_id"], "for": "1h"},
            )  # fmt: skip

    try:
        results = await asyncio.gather(*(signup(i) for i in range(50)))
    finally:
        await pool.close()
    assert sum(r.created for r in results) == 1
    assert sum(r.duplicate for r in results) == 49
    assert len({r.id for r in results}) == 1
    assert len(await q(url, "SELECT * FROM tasks")) == 1


async def test_a_unique_enqueue_outside_a_transaction_and_with_a_key(
    config: Config, app_conn: asyncpg.Connection
) -> None:
    unique = {"key": "nightly-report"}
    first = await taskstream.enqueue(app_conn, "report", {}, unique=unique, idempotency_key="a")
    retry = await taskstream.enqueue(app_conn, "report", {}, unique=unique, idempotency_key="a")
    assert (retry.id, retry.created, retry.duplicate) == (first.id, False, False)
    other = await taskstream.enqueue(app_conn, "report", {}, unique=unique, idempotency_key="b")
    assert (other.id, other.duplicate) == (first.id, True)
    assert len(await q(config.stores.database_url, "SELECT * FROM idempotency_keys")) == 1


async def test_a_task_enqueued_with_a_delay_is_moved_by_the_watcher_when_due(
    config: Config, db: Database, streams: Streams, metrics: Metrics,
    app_conn: asyncpg.Connection,
) -> None:  # fmt: skip
    done = await taskstream.enqueue(app_conn, "t", {}, delay_ms=60_000)
    assert done.status == "scheduled"
    assert await q(config.stores.database_url, "SELECT * FROM outbox") == []
    view = await db.get_task(done.id)
    assert view is not None and view.status == "scheduled"
    await q(config.stores.database_url, "UPDATE due SET due_at = now(), bucket = "
            "date_trunc('hour', now(), 'UTC')")  # fmt: skip
    assert (await Watcher(config, db, streams, metrics).run_once()).moved == 1
