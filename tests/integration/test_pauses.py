"""Queue pause and resume against real Redis and Postgres: a paused priority or task type
starts nothing; its tasks wait queued with no attempt used; running ones finish; resume
releases them."""

from __future__ import annotations

import asyncio
from typing import Any

from taskstream.services.watcher.watcher import Watcher
from taskstream.shared import config as config_mod
from taskstream.shared import ops, schedule_ops
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.handlers import Context
from taskstream.shared.metrics import Metrics
from taskstream.shared.schedule_models import QueuePauseRequest
from taskstream.shared.streams import Streams
from tests.conftest import counter_value
from tests.factories import enqueue, new_task
from tests.helpers import query, wait_for
from tests.integration.test_executor import executor, registry_with


async def status_and_attempt(db: Database, ids: list[Any]) -> set[tuple[str, int]]:
    out = set()
    for task_id in ids:
        view = await db.get_task(task_id)
        assert view is not None
        out.add((view.status, view.attempt))
    return out


async def no_attempts_recorded(config: Config) -> bool:
    rows = await query(config.stores.database_url, "SELECT count(*) AS n FROM task_attempts")
    return bool(rows[0]["n"] == 0)


async def test_a_paused_priority_starts_nothing_and_resume_runs_it_with_no_attempt_used(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    await schedule_ops.pause_queue(db, QueuePauseRequest(priority="high", note="deploy"))
    high = await enqueue(db, streams, [new_task(config, priority="high") for _ in range(3)])
    other = await enqueue(db, streams, [new_task(config) for _ in range(2)])
    await executor(config, db, streams, metrics).run_once()

    assert await status_and_attempt(db, other) == {("succeeded", 1)}
    assert await status_and_attempt(db, high) == {("queued", 1)}
    assert await no_attempts_recorded(config)
    snapshot = await ops.queues(db, streams)
    [h] = [q for q in snapshot.queues if q.priority == "high"]
    assert (h.paused, h.paused_note, h.lag, h.pending) == (True, "deploy", 3, 0)  # undelivered

    resumed = await schedule_ops.resume_queue(db, QueuePauseRequest(priority="high"))
    assert resumed.changed and not resumed.paused
    await executor(config, db, streams, metrics).run_once()
    assert await status_and_attempt(db, high) == {("succeeded", 1)}
    assert await no_attempts_recorded(config)


async def test_a_paused_type_is_parked_not_claimed_and_unparked_on_resume(
    config: Config, db: Database, streams: Streams, metrics: Metrics, metric_reader: Any
) -> None:
    await schedule_ops.pause_queue(db, QueuePauseRequest(type="payments.charge", note="PSP down"))
    charges = await enqueue(db, streams, [new_task(config, "payments.charge") for _ in range(3)])
    other = await enqueue(db, streams, [new_task(config) for _ in range(2)])
    charged: list[Any] = []

    async def charge(payload: Any, ctx: Context) -> None:
        charged.append(ctx.task_id)

    registry = registry_with(**{"payments.charge": charge})
    await executor(config, db, streams, metrics, registry).run_once()

    assert charged == []
    assert await status_and_attempt(db, other) == {("succeeded", 1)}
    assert await status_and_attempt(db, charges) == {("queued", 1)}
    assert await no_attempts_recorded(config)
    assert sum((await streams.pending_count()).values()) == 0  # their entries acknowledged
    assert counter_value(metric_reader, "tasks_parked", type="payments.charge") == 3
    [paused] = (await ops.queues(db, streams)).paused_types
    assert (paused.type, paused.note, paused.parked) == ("payments.charge", "PSP down", 3)

    # Parked on purpose: the repair's sweep does not take them for lost entries, and the
    # unpark role leaves them while the type is paused.
    eager = config_mod.replace(config, repair_after_ms=1)
    watcher = Watcher(eager, db, streams, metrics)
    await asyncio.sleep(0.01)
    report = await watcher.run_once()
    assert (report.repaired, report.unparked) == (0, 0)

    await schedule_ops.resume_queue(db, QueuePauseRequest(type="payments.charge"))
    assert (await watcher.run_once()).unparked == 3
    assert counter_value(metric_reader, "tasks_unparked") == 3
    await executor(config, db, streams, metrics, registry).run_once()
    assert sorted(charged) == sorted(charges)
    assert await status_and_attempt(db, charges) == {("succeeded", 1)}
    assert await no_attempts_recorded(config)
    assert await query(config.stores.database_url, "SELECT * FROM parked_tasks") == []


async def test_running_tasks_of_a_queue_being_paused_finish(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    config = config_mod.replace(config, pause_poll_ms=20)
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(payload: Any, ctx: Context) -> None:
        started.set()
        await release.wait()

    ex = executor(config, db, streams, metrics, registry_with(slow=slow))
    stop = asyncio.Event()
    run = asyncio.create_task(ex.run(stop))
    [running] = await enqueue(db, streams, [new_task(config, "slow")])
    await asyncio.wait_for(started.wait(), 10)
    await schedule_ops.pause_queue(db, QueuePauseRequest(type="slow"))
    await wait_for(lambda: _async(ex.pauses.types == {"slow"}))
    [waiting] = await enqueue(db, streams, [new_task(config, "slow")])

    async def parked() -> bool:
        rows = await query(config.stores.database_url, "SELECT task_id FROM parked_tasks")
        return [r["task_id"] for r in rows] == [waiting]

    await wait_for(parked)
    release.set()

    async def finished() -> bool:
        view = await db.get_task(running)
        return view is not None and view.status == "succeeded"

    await wait_for(finished)
    assert await status_and_attempt(db, [waiting]) == {("queued", 1)}
    stop.set()
    await run


async def _async(value: bool) -> bool:
    return value


async def test_every_priority_paused_reads_nothing(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    for priority in ("critical", "high", "default", "low"):
        await schedule_ops.pause_queue(db, QueuePauseRequest(priority=priority))
    ids = await enqueue(db, streams, [new_task(config, priority="low")])
    assert await executor(config, db, streams, metrics).run_once() == 0
    assert await status_and_attempt(db, ids) == {("queued", 1)}


async def test_pausing_twice_keeps_one_pause_and_a_bad_request_names_the_field(
    db: Database,
) -> None:
    first = await schedule_ops.pause_queue(db, QueuePauseRequest(priority="low", note="a"))
    again = await schedule_ops.pause_queue(db, QueuePauseRequest(priority="low"))
    assert (first.changed, again.changed, again.note) == (True, False, "a")
    assert [p.name for p in (await schedule_ops.pauses(db)).pauses] == ["low"]
    assert not (await schedule_ops.resume_queue(db, QueuePauseRequest(type="x"))).changed
    for bad in (QueuePauseRequest(), QueuePauseRequest(priority="low", type="x")):
        try:
            await schedule_ops.pause_queue(db, bad)
        except schedule_ops.InvalidSchedule as exc:
            assert exc.field == "priority"
        else:
            raise AssertionError("accepted")


async def test_gauges_show_paused_queues(
    config: Config, db: Database, streams: Streams, metrics: Metrics, metric_reader: Any
) -> None:
    from taskstream.services.janitor.janitor import Janitor

    janitor = Janitor(config, db, streams, metrics, name="j")
    await schedule_ops.pause_queue(db, QueuePauseRequest(priority="low"))
    await schedule_ops.pause_queue(db, QueuePauseRequest(type="email.send"))
    await janitor.gauges.run_once()
    assert counter_value(metric_reader, "queue_paused", kind="priority", queue="low") == 1
    assert counter_value(metric_reader, "queue_paused", kind="priority", queue="high") == 0
    assert counter_value(metric_reader, "queue_paused", kind="type", queue="email.send") == 1
    await schedule_ops.resume_queue(db, QueuePauseRequest(type="email.send"))
    await janitor.gauges.run_once()
    assert counter_value(metric_reader, "queue_paused", kind="type", queue="email.send") == 0
