"""Exactly-once effects for handlers whose writes live in the same Postgres: the writes commit
in the transaction that records the task's success, or not at all."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from taskstream.services.executor.executor import Executor
from taskstream.shared import config as config_mod
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.handlers import Context, Registry
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.conftest import counter_value
from tests.factories import enqueue, new_task
from tests.helpers import query as sql


@pytest.fixture
async def ledger(config: Config) -> str:
    await sql(
        config.stores.database_url, "CREATE TABLE ledger (task_id uuid PRIMARY KEY, amount int)"
    )
    return config.stores.database_url


def registry_of(fn: Any) -> Registry:
    registry = Registry()
    registry.register("pay", fn, transactional=True)
    return registry


async def test_writes_commit_with_the_success(
    ledger: str, config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    async def pay(payload: Any, ctx: Context) -> None:
        assert ctx.db is not None
        await ctx.db.execute("INSERT INTO ledger VALUES ($1, $2)", ctx.task_id, payload["amount"])

    [task_id] = await enqueue(db, streams, [new_task(config, "pay", {"amount": 7})])
    await Executor(config, db, streams, registry_of(pay), metrics, consumer="c").run_once()

    rows = await sql(ledger, "SELECT amount FROM ledger WHERE task_id = $1", task_id)
    assert [r["amount"] for r in rows] == [7]
    view = await db.get_task(task_id)
    assert view is not None and view.status == "succeeded"


async def test_a_failing_handler_leaves_no_write(
    ledger: str, config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    async def pay(payload: Any, ctx: Context) -> None:
        assert ctx.db is not None
        await ctx.db.execute("INSERT INTO ledger VALUES ($1, 1)", ctx.task_id)
        raise RuntimeError("downstream said no")

    [task_id] = await enqueue(db, streams, [new_task(config, "pay")])
    await Executor(config, db, streams, registry_of(pay), metrics, consumer="c").run_once()

    assert await sql(ledger, "SELECT * FROM ledger") == []
    view = await db.get_task(task_id)
    assert view is not None and view.status == "retrying"


async def test_a_timed_out_handler_leaves_no_write(
    ledger: str, config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    async def pay(payload: Any, ctx: Context) -> None:
        assert ctx.db is not None
        await ctx.db.execute("INSERT INTO ledger VALUES ($1, 1)", ctx.task_id)
        await ctx.db.execute("SELECT pg_sleep(5)")

    [task_id] = await enqueue(db, streams, [new_task(config, "pay", timeout_ms=100)])
    await Executor(config, db, streams, registry_of(pay), metrics, consumer="c").run_once()

    assert await sql(ledger, "SELECT * FROM ledger") == []
    view = await db.get_task(task_id)
    assert view is not None and view.status == "retrying"
    assert view.last_error is not None and view.last_error.type == "Timeout"


async def test_a_taken_over_attempt_rolls_its_writes_back(
    ledger: str,
    config: Config,
    db: Database,
    streams: Streams,
    metrics: Metrics,
    metric_reader: InMemoryMetricReader,
) -> None:
    async def pay(payload: Any, ctx: Context) -> None:
        assert ctx.db is not None
        await ctx.db.execute("INSERT INTO ledger VALUES ($1, 1)", ctx.task_id)
        # Meanwhile its lease expired and the janitor moved the task to a new attempt.
        await sql(
            ledger,
            "UPDATE tasks SET attempt = attempt + 1, status = 'retrying' WHERE id = $1",
            ctx.task_id,
        )

    config = config_mod.replace(config, worker_pool=1)
    [task_id] = await enqueue(db, streams, [new_task(config, "pay")])
    await Executor(config, db, streams, registry_of(pay), metrics, consumer="c").run_once()

    assert await sql(ledger, "SELECT * FROM ledger") == []
    view = await db.get_task(task_id)
    assert view is not None and (view.status, view.attempt) == ("retrying", 2)
    assert counter_value(metric_reader, "fenced_results") == 1
    assert sum((await streams.pending_count()).values()) == 0
