"""The executor against real Redis and Postgres: claims, outcomes, fencing, fairness, shutdown."""

from __future__ import annotations

import asyncio
import collections
import uuid
from typing import Any

import msgspec
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from taskstream.services.executor.executor import Executor
from taskstream.shared import config as config_mod
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.domain import Outcome
from taskstream.shared.handlers import BUILTINS, Context, NonRetryableError, Registry
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Publish, Streams
from tests.conftest import counter_value
from tests.factories import enqueue, new_task
from tests.helpers import query as fetch


def registry_with(**extra: Any) -> Registry:
    registry = Registry()
    for name, fn in {**BUILTINS, **extra}.items():
        registry.register(name, fn)
    return registry


def executor(
    config: Config,
    db: Database,
    streams: Streams,
    metrics: Metrics,
    registry: Registry | None = None,
    consumer: str = "test-1",
) -> Executor:
    return Executor(config, db, streams, registry or registry_with(), metrics, consumer=consumer)


async def pending(streams: Streams) -> int:
    return sum((await streams.pending_count()).values())


async def test_noop_task_succeeds_and_handler_receives_payload_and_context(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    seen: list[tuple[Any, Context]] = []

    async def record(payload: Any, ctx: Context) -> None:
        seen.append((payload, ctx))

    [task_id] = await enqueue(db, streams, [new_task(config, "record", {"to": "x", "n": [1, 2]})])
    ran = await executor(config, db, streams, metrics, registry_with(record=record)).run_once()

    assert ran == 1
    assert seen[0][0] == {"to": "x", "n": [1, 2]}
    ctx = seen[0][1]
    assert (ctx.task_id, ctx.attempt, ctx.attempt_number, ctx.type) == (task_id, 1, 1, "record")
    assert ctx.idempotency_key == f"{task_id}:1"
    view = await db.get_task(task_id)
    assert view is not None and view.status == "succeeded"
    assert view.started_at is not None and view.finished_at is not None
    assert await pending(streams) == 0


async def test_failed_attempt_is_recorded_and_queued_for_retry_with_backoff(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    [task_id] = await enqueue(db, streams, [new_task(config, "flaky", {"fail_first_n": 1})])
    await executor(config, db, streams, metrics).run_once()

    view = await db.get_task(task_id)
    assert view is not None and view.status == "retrying" and view.attempt == 2
    assert view.last_error is not None and view.last_error.type == "FlakyError"
    [attempt] = await db.attempts(task_id)
    assert (attempt["attempt"], attempt["outcome"], attempt["consumer"]) == (1, "failed", "test-1")
    [due] = await fetch(
        config.stores.database_url,
        "SELECT d.attempt, kind, due_at - a.finished_at AS wait,"
        " bucket = date_trunc('hour', due_at, 'UTC') AS bucketed"
        " FROM due d JOIN task_attempts a USING (task_id) WHERE task_id = $1",
        task_id,
    )
    assert due["attempt"] == 2 and due["kind"] == "retry" and due["bucketed"]
    # The first retry waits retry_base_ms (no jitter in this config) after the failure.
    assert due["wait"].total_seconds() * 1000 == pytest.approx(config.tasks.retry_base_ms)
    assert await pending(streams) == 0


async def test_attempts_exhausted_goes_to_dead_letters(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    [task_id] = await enqueue(db, streams, [new_task(config, "always_fail", max_attempts=1)])
    await executor(config, db, streams, metrics).run_once()

    view = await db.get_task(task_id)
    assert view is not None and view.status == "dead"
    [letter] = await fetch(
        config.stores.database_url,
        "SELECT reason, attempt FROM dead_letters WHERE task_id=$1",
        task_id,
    )
    assert (letter["reason"], letter["attempt"]) == ("attempts_exhausted", 1)


async def test_unknown_type_and_non_retryable_error_go_straight_to_dead_letters(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    async def refuse(payload: Any, ctx: Context) -> None:
        raise NonRetryableError("bad input")

    unknown, refused = await enqueue(
        db, streams, [new_task(config, "no.such.type"), new_task(config, "refuse")]
    )
    await executor(config, db, streams, metrics, registry_with(refuse=refuse)).run_once()

    rows = await fetch(
        config.stores.database_url, "SELECT task_id, reason FROM dead_letters ORDER BY reason"
    )
    assert {(r["task_id"], r["reason"]) for r in rows} == {
        (refused, "non_retryable"),
        (unknown, "unknown_type"),
    }
    for task_id in (unknown, refused):
        view = await db.get_task(task_id)
        assert view is not None and view.status == "dead" and view.attempt == 1


async def test_handler_timeout_is_a_failed_attempt(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    [task_id] = await enqueue(
        db, streams, [new_task(config, "sleeper", {"ms": 5000}, timeout_ms=50, max_attempts=2)]
    )
    await executor(config, db, streams, metrics).run_once()

    view = await db.get_task(task_id)
    assert view is not None and view.status == "retrying" and view.attempt == 2
    assert view.last_error is not None and view.last_error.type == "Timeout"
    [attempt] = await db.attempts(task_id)
    assert attempt["outcome"] == "timeout"


async def test_stale_completion_is_rejected_by_fencing(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    [task_id] = await enqueue(db, streams, [new_task(config)])
    [claimed] = await db.claim([task_id], [1], ["1-1"], "old-worker")
    # The lease expired and the entry was reclaimed: attempt 2 now owns the task.
    await fetch(
        config.stores.database_url,
        "UPDATE tasks SET attempt = 2, status = 'queued' WHERE id = $1",
        task_id,
    )
    recorded = await db.complete(
        [Outcome(task_id=task_id, attempt=claimed.attempt, kind="succeeded")]
    )
    assert recorded == set()
    view = await db.get_task(task_id)
    assert view is not None and (view.status, view.attempt) == ("queued", 2)
    # A late failure of the stale attempt cannot touch it either.
    error = msgspec.json.encode({"type": "X", "message": "late"})
    assert (
        await db.complete([Outcome(task_id=task_id, attempt=1, kind="retry", error=error)]) == set()
    )
    assert (
        await db.complete([Outcome(task_id=task_id, attempt=1, kind="dead", error=error)]) == set()
    )
    assert await db.attempts(task_id) == []


async def test_result_of_a_reclaimed_attempt_is_dropped_and_counted(
    config: Config,
    db: Database,
    streams: Streams,
    metrics: Metrics,
    metric_reader: InMemoryMetricReader,
) -> None:
    async def overtaken(payload: Any, ctx: Context) -> None:
        # While this attempt runs, the task is taken over by a newer attempt.
        await fetch(
            config.stores.database_url,
            "UPDATE tasks SET attempt = attempt + 1, status = 'queued' WHERE id = $1",
            ctx.task_id,
        )

    [task_id] = await enqueue(db, streams, [new_task(config, "overtaken")])
    await executor(config, db, streams, metrics, registry_with(overtaken=overtaken)).run_once()

    view = await db.get_task(task_id)
    assert view is not None and (view.status, view.attempt) == ("queued", 2)
    assert counter_value(metric_reader, "fenced_results", stage="complete") == 1
    assert counter_value(metric_reader, "tasks_succeeded") == 0
    assert await pending(streams) == 0  # the stale entry is acknowledged all the same


async def test_duplicate_and_cancelled_entries_are_dropped_without_running(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    runs: collections.Counter[uuid.UUID] = collections.Counter()

    async def count(payload: Any, ctx: Context) -> None:
        runs[ctx.task_id] += 1

    dup, cancelled = await enqueue(
        db, streams, [new_task(config, "count"), new_task(config, "count")]
    )
    # A crash between XADD and commit leaves a second entry for the same attempt.
    await streams.publish([Publish(priority="default", task_id=dup, attempt=1)])
    assert await db.cancel_task(cancelled) is not None

    ran = await executor(config, db, streams, metrics, registry_with(count=count)).run_once()

    assert ran == 3
    assert runs == {dup: 1}
    view = await db.get_task(cancelled)
    assert view is not None and view.status == "cancelled"
    assert await pending(streams) == 0


async def test_undecodable_entry_is_dropped_without_blocking_others(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    [task_id] = await enqueue(db, streams, [new_task(config)])
    await streams._r.xadd(streams.keys.stream("default"), {"garbage": "1"})
    await executor(config, db, streams, metrics).run_once()
    view = await db.get_task(task_id)
    assert view is not None and view.status == "succeeded"
    assert await pending(streams) == 0


@pytest.mark.parametrize("mode", ["weighted", "strict"])
async def test_priority_shares_under_saturation(
    mode: str, config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    per_priority, sample = 1200, 1500
    config = config_mod.replace(config, priority_mode=mode, worker_pool=4, prefetch=4)
    started: list[str] = []
    stop = asyncio.Event()

    async def track(payload: Any, ctx: Context) -> None:
        started.append(ctx.priority)
        if len(started) >= sample:
            stop.set()

    tasks = [
        new_task(config, "track", priority=p)
        for _ in range(per_priority)
        for p in ("critical", "high", "default", "low")
    ]
    await enqueue(db, streams, tasks)
    ex = executor(config, db, streams, metrics, registry_with(track=track))
    await ex.run(stop)

    shares = collections.Counter(started[:sample])
    if mode == "strict":
        # Every critical task first; only then does the next priority get anything.
        assert started[:per_priority] == ["critical"] * per_priority
        assert set(started[per_priority:sample]) == {"high"}
        return
    weights = config.executor.weights()
    total = sum(weights.values())
    for priority, weight in weights.items():
        expected = sample * weight / total
        assert abs(shares[priority] - expected) <= 0.1 * expected, (priority, shares)
    assert shares["low"] > 0


async def test_lone_priority_gets_the_whole_executor(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    await enqueue(db, streams, [new_task(config, priority="low") for _ in range(50)])
    ran = await executor(config, db, streams, metrics).run_once()
    assert ran == 50


async def test_stop_finishes_running_handlers_and_releases_unstarted_ones(
    config: Config,
    db: Database,
    streams: Streams,
    metrics: Metrics,
    metric_reader: InMemoryMetricReader,
) -> None:
    config = config_mod.replace(config, worker_pool=2, prefetch=6)
    stop = asyncio.Event()
    started: list[uuid.UUID] = []
    release = asyncio.Event()

    async def slow(payload: Any, ctx: Context) -> None:
        started.append(ctx.task_id)
        if len(started) == 2:
            stop.set()  # SIGTERM arrives while two handlers run
        await release.wait()

    ids = await enqueue(db, streams, [new_task(config, "slow") for _ in range(8)])
    ex = executor(config, db, streams, metrics, registry_with(slow=slow))
    run = asyncio.create_task(ex.run(stop))
    await asyncio.wait_for(stop.wait(), 5)
    release.set()
    await asyncio.wait_for(run, 10)

    statuses = {
        r["id"]: r["status"]
        for r in await fetch(config.stores.database_url, "SELECT id, status FROM tasks")
    }
    assert sorted(statuses[i] for i in started) == ["succeeded", "succeeded"]
    rest = [i for i in ids if i not in started]
    assert all(statuses[i] == "queued" for i in rest)
    # Nothing is left pending, and each released task has exactly one fresh entry.
    assert await pending(streams) == 0
    entries = await streams.entries("default")
    acked_or_fresh = collections.Counter(uuid.UUID(f["t"]) for _, f in entries)
    assert all(acked_or_fresh[i] == 2 for i in rest)  # the original and the re-published one
    # Another executor picks them up and nothing runs twice.
    finished: list[uuid.UUID] = []

    async def quick(payload: Any, ctx: Context) -> None:
        finished.append(ctx.task_id)

    await executor(
        config, db, streams, metrics, registry_with(slow=quick), consumer="test-2"
    ).run_once()
    assert sorted(finished) == sorted(rest)
    assert counter_value(metric_reader, "tasks_succeeded") == 8


async def test_grace_expiry_leaves_running_entries_pending_and_unrecorded(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    config = config_mod.replace(config, worker_pool=1, prefetch=0, shutdown_grace_ms=50)
    stop = asyncio.Event()

    async def hang(payload: Any, ctx: Context) -> None:
        stop.set()
        await asyncio.sleep(60)

    [task_id] = await enqueue(db, streams, [new_task(config, "hang")])
    await asyncio.wait_for(
        executor(config, db, streams, metrics, registry_with(hang=hang)).run(stop), 10
    )
    view = await db.get_task(task_id)
    assert view is not None and view.status == "running"
    assert await pending(streams) == 1  # no ack without a commit

    # A restart under the same consumer name takes its own entry back and finishes it.
    ran = await executor(config, db, streams, metrics).run_once()
    assert ran == 1
    view = await db.get_task(task_id)
    assert view is not None and view.status == "dead"  # "hang" is unknown to the new registry
    assert await pending(streams) == 0


async def test_ack_happens_only_after_commit(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    observed: list[tuple[str, int]] = []

    class Spy(Database):
        async def complete(self, outcomes: Any) -> Any:
            observed.append(("commit-start", await pending(streams)))
            result = await super().complete(outcomes)
            observed.append(("committed", await pending(streams)))
            return result

    spy = Spy(db._pool)
    await enqueue(db, streams, [new_task(config) for _ in range(5)])
    await Executor(config, spy, streams, registry_with(), metrics, consumer="c").run_once()
    assert observed and all(n > 0 for _, n in observed)  # still pending while committing
    assert await pending(streams) == 0


async def test_same_entry_id_on_two_streams_runs_both_tasks(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    # Entry ids are unique per stream only: two priorities can hand out the same id.
    high, low = new_task(config, priority="high"), new_task(config, priority="low")
    await db.insert_tasks([high, low])
    await streams.ensure_groups()
    for task in (high, low):
        await streams._r.xadd(
            streams.keys.stream(task.priority), {"t": str(task.id), "a": "1"}, id="5-1"
        )
    ran = await executor(config, db, streams, metrics).run_once()
    assert ran == 2
    for task in (high, low):
        view = await db.get_task(task.id)
        assert view is not None and view.status == "succeeded"
