"""Snooze: a handler raising ``taskstream.Snooze(seconds)`` runs again after the delay, through
the due table, without using an attempt; its fencing token still grows; the snooze is in the
task's history and in ``tasks_snoozed_total``."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import taskstream
from taskstream.services.executor.executor import Executor
from taskstream.services.watcher.watcher import Watcher
from taskstream.shared import ops
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.handlers import Context, Registry
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.conftest import counter_value
from tests.factories import enqueue, new_task
from tests.helpers import query as sql


def snoozing(seconds: float, runs: list[tuple[int, int]], *, times: int = 1) -> Registry:
    """A handler that snoozes its first ``times`` runs, then returns; ``runs`` records each
    run's (attempt, attempt_number)."""

    async def fn(payload: Any, ctx: Context) -> str:
        runs.append((ctx.attempt, ctx.attempt_number))
        if len(runs) <= times:
            raise taskstream.Snooze(seconds)
        return "done"

    registry = Registry()
    registry.register("job", fn)
    return registry


async def make_due_now(url: str, task_id: uuid.UUID) -> None:
    """Let time pass for the due row (what an injectable clock would do): it is due now."""
    await sql(
        url,
        "UPDATE due SET due_at = now(), bucket = date_trunc('hour', now(), 'UTC') "
        "WHERE task_id = $1",
        task_id,
    )


async def test_a_snooze_keeps_the_attempt_count_and_runs_again_after_the_delay(
    config: Config, db: Database, streams: Streams, metrics: Metrics,
    metric_reader: InMemoryMetricReader,
) -> None:  # fmt: skip
    url = config.stores.database_url
    runs: list[tuple[int, int]] = []
    registry = snoozing(3600, runs)
    # One attempt only: had the snooze used it, the task could not run again.
    [task_id] = await enqueue(db, streams, [new_task(config, "job", max_attempts=1)])
    executor = Executor(config, db, streams, registry, metrics, consumer="c")
    watcher = Watcher(config, db, streams, metrics)

    await executor.run_once()
    view = await db.get_task(task_id)
    assert view is not None and view.status == "scheduled" and view.attempt == 2
    [row] = await sql(url, "SELECT attempt, first_attempt FROM tasks")
    assert (row["attempt"], row["first_attempt"]) == (2, 2)
    [due] = await sql(
        url, "SELECT attempt, kind, extract(epoch FROM due_at - now()) AS ahead FROM due"
    )
    assert (due["attempt"], due["kind"]) == (2, "delayed") and 3590 < due["ahead"] <= 3600
    assert counter_value(metric_reader, "tasks_snoozed", type="job") == 1
    assert counter_value(metric_reader, "tasks_failed") == 0

    assert (await watcher.run_once()).moved == 0  # not before its time
    await make_due_now(url, task_id)
    assert (await watcher.run_once()).moved == 1
    await executor.run_once()

    view = await db.get_task(task_id)
    assert view is not None and view.status == "succeeded" and view.result == "done"
    assert runs == [(1, 1), (2, 1)]  # the token grew, the attempt number did not
    history = await ops.task_history(db, streams, task_id)
    assert history is not None and history.attempts_used == 1
    assert [(a.attempt, a.outcome, a.error) for a in history.attempts] == [(1, "snoozed", None)]


async def test_a_short_snooze_is_not_run_before_its_delay(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    runs: list[tuple[int, int]] = []
    [task_id] = await enqueue(db, streams, [new_task(config, "job")])
    executor = Executor(config, db, streams, snoozing(0.5, runs), metrics, consumer="c")
    watcher = Watcher(config, db, streams, metrics)
    await executor.run_once()
    snoozed_at = time.monotonic()
    while (await watcher.run_once()).moved == 0:
        assert time.monotonic() - snoozed_at < 10
        await asyncio.sleep(0.05)  # the watcher's own interval, in a test
    assert time.monotonic() - snoozed_at >= 0.45  # Postgres's clock decides; a little slack
    await executor.run_once()
    view = await db.get_task(task_id)
    assert view is not None and view.status == "succeeded" and len(runs) == 2


async def test_snoozes_never_run_out_of_attempts(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    url = config.stores.database_url
    runs: list[tuple[int, int]] = []
    [task_id] = await enqueue(db, streams, [new_task(config, "job", max_attempts=2)])
    executor = Executor(config, db, streams, snoozing(3600, runs, times=5), metrics, consumer="c")
    watcher = Watcher(config, db, streams, metrics)
    for _ in range(5):
        await executor.run_once()
        await make_due_now(url, task_id)
        await watcher.run_once()
    await executor.run_once()
    view = await db.get_task(task_id)
    assert view is not None and view.status == "succeeded" and view.attempt == 6
    assert [n for _, n in runs] == [1] * 6


async def test_a_snoozed_task_can_be_cancelled(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    [task_id] = await enqueue(db, streams, [new_task(config, "job")])
    await Executor(config, db, streams, snoozing(3600, []), metrics, consumer="c").run_once()
    view = await db.cancel_task(task_id)
    assert view is not None and view.status == "cancelled"
    assert await sql(config.stores.database_url, "SELECT * FROM due") == []


async def test_an_exactly_once_handler_that_snoozes_writes_nothing(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    url = config.stores.database_url
    await sql(url, "CREATE TABLE ledger (task_id uuid)")

    async def pay(payload: Any, ctx: Context) -> None:
        assert ctx.db is not None
        await ctx.db.execute("INSERT INTO ledger VALUES ($1)", ctx.task_id)
        raise taskstream.Snooze(60)

    registry = Registry()
    registry.register("job", pay, transactional=True)
    [task_id] = await enqueue(db, streams, [new_task(config, "job")])
    await Executor(config, db, streams, registry, metrics, consumer="c").run_once()
    view = await db.get_task(task_id)
    assert view is not None and view.status == "scheduled"
    assert await sql(url, "SELECT * FROM ledger") == []


@pytest.mark.parametrize("seconds", [-1, 31 * 24 * 3600, float("nan")])
def test_snooze_refuses_a_delay_out_of_range(seconds: float) -> None:
    with pytest.raises(ValueError, match="Snooze takes 0 to"):
        taskstream.Snooze(seconds)
