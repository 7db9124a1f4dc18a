"""Each background role on its own, through ``run_once()``, and the one loop that runs them."""

from __future__ import annotations

import asyncio
import time

import pytest

from taskstream.services.janitor.consumers import Consumers
from taskstream.services.janitor.gauges import Gauges
from taskstream.services.janitor.orphans import Orphans
from taskstream.services.janitor.reclaim import Reclaim
from taskstream.services.janitor.trim import Trim
from taskstream.services.watcher.due import DueMover
from taskstream.services.watcher.release import Release
from taskstream.services.watcher.repair import Repair
from taskstream.shared import config as config_mod
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.errors import StoreUnavailable
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from taskstream.shared.supervise import Done, backoff_s, supervise
from tests.factories import enqueue, new_task
from tests.helpers import query
from tests.integration.test_janitor import stall


async def test_due_mover_moves_one_batch_and_says_when_there_is_more(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    config = config_mod.replace(config, watch_batch=2)
    ids = await enqueue(db, streams, [new_task(config) for _ in range(3)])
    await query(config.stores.database_url, "UPDATE tasks SET status = 'retrying'")
    await query(
        config.stores.database_url,
        "INSERT INTO due (bucket, due_at, task_id, attempt, priority, kind) "
        "SELECT date_trunc('hour', now(), 'UTC'), now(), id, 1, priority, 'retry' FROM tasks",
    )
    mover = DueMover(config.watcher, db, Release(streams), metrics)

    first = await mover.run_once()
    second = await mover.run_once()

    assert (first.moved, first.more, second.moved, second.more) == (2, True, 1, False)
    rows = await query(config.stores.database_url, "SELECT status FROM tasks")
    assert [r["status"] for r in rows] == ["queued"] * len(ids)


async def test_repair_resends_queued_tasks_after_redis_lost_them(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    repair = Repair(config.watcher, db, streams, Release(streams), metrics)
    await repair.start()
    await enqueue(db, streams, [new_task(config) for _ in range(4)])
    await streams.delete_namespace()

    done = await repair.run_once()

    assert (done.repaired, done.redis_lost) == (4, True)
    assert sum((await streams.lengths()).values()) == 4


async def test_reclaim_turns_an_expired_lease_into_a_failed_attempt(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    config = config_mod.replace(config, vis_timeout_ms=1)
    [task_id] = await enqueue(db, streams, [new_task(config)])
    await stall(streams, db, "gone")
    await asyncio.sleep(0.005)
    role = Reclaim(config.janitor, config.lease, db, streams, metrics, consumer="j")

    done = await role.run_once()

    assert (done.reclaimed, done.poisoned, done.dropped) == (1, 0, 0)
    view = await db.get_task(task_id)
    assert view is not None and view.status == "retrying"


async def test_orphans_recovers_a_running_task_whose_entry_is_gone(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    config = config_mod.replace(config, vis_timeout_ms=1000)
    [task_id] = await enqueue(db, streams, [new_task(config, timeout_ms=1)])
    await stall(streams, db, "gone")
    await streams.delete_namespace()
    await streams.ensure_groups()
    await query(
        config.stores.database_url,
        "UPDATE tasks SET updated_at = now() - interval '5 s', started_at = now() - interval '5 s'",
    )
    role = Orphans(config.lease, db, streams, metrics, interval_s=1)

    assert (await role.run_once()).orphans == 1
    view = await db.get_task(task_id)
    assert view is not None and view.last_error is not None
    assert view.last_error.type == "EntryLost"


async def test_trim_removes_acknowledged_entries(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    await enqueue(db, streams, [new_task(config) for _ in range(3)])
    got = await streams.read("c", {"default": 3})
    await streams.ack(("default", d.entry_id) for d in got["default"])

    assert (await Trim(streams, metrics, interval_s=1).run_once()).trimmed == 3
    assert (await streams.lengths())["default"] == 0


async def test_consumers_removes_an_idle_consumer_with_nothing_pending(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    config = config_mod.replace(config, consumer_idle_ms=1)
    await enqueue(db, streams, [new_task(config)])
    [entry] = (await streams.read("idle-one", {"default": 1}))["default"]
    await streams.ack([("default", entry.entry_id)])
    await asyncio.sleep(0.01)

    assert (await Consumers(config.janitor, streams).run_once()).consumers_removed == 1
    assert await streams.consumers() == []


async def test_gauges_sample_the_queues(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    await enqueue(db, streams, [new_task(config, priority="high") for _ in range(2)])

    done = await Gauges(db, streams, metrics, interval_s=1).run_once()

    assert done.queues is not None
    high = next(q for q in done.queues.queues if q.priority == "high")
    assert (high.length, high.lag) == (2, 2)


class Flaky:
    """A role whose store is down for its first ``failures`` passes."""

    name = "flaky"
    interval_s = 0.001

    def __init__(self, failures: int, stop: asyncio.Event, *, fail_start: bool = False) -> None:
        self.failures = failures
        self.fail_start = fail_start
        self.passes = 0
        self.starts = 0
        self.stop = stop
        self.backing_off = asyncio.Event()

    async def start(self) -> None:
        self.starts += 1
        if self.fail_start and self.starts == 1:
            raise StoreUnavailable("Postgres is not reachable")

    async def run_once(self) -> Done:
        self.passes += 1
        if self.passes == 3:
            self.backing_off.set()  # then waits 0.4 s before the next pass
        if self.passes <= self.failures:
            raise StoreUnavailable("Redis is not reachable")
        self.stop.set()
        return Done()


async def test_supervise_rides_out_a_store_outage_and_a_failed_start() -> None:
    stop = asyncio.Event()
    role = Flaky(3, stop, fail_start=True)
    seen: list[str] = []

    await asyncio.wait_for(
        supervise([role], stop, on_failure=lambda r, e: seen.append(type(e).__name__)), 5
    )

    assert (role.starts, role.passes) == (2, 4)
    assert seen == ["StoreUnavailable"] * 4


async def test_supervise_stops_at_once_while_backing_off() -> None:
    stop = asyncio.Event()
    role = Flaky(10_000, stop)
    task = asyncio.create_task(supervise([role], stop))
    await asyncio.wait_for(role.backing_off.wait(), 10)
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, 2)
    assert time.monotonic() - started < 0.2


async def test_supervise_lets_a_bug_take_the_service_down() -> None:
    class Buggy:
        name = "buggy"
        interval_s = 0.01

        async def start(self) -> None:
            pass

        async def run_once(self) -> Done:
            raise ZeroDivisionError("a bug")

    with pytest.raises(ExceptionGroup) as info:
        await asyncio.wait_for(supervise([Buggy()], asyncio.Event()), 2)
    assert info.group_contains(ZeroDivisionError)


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff_s(n) for n in (1, 2, 3)] == [0.1, 0.2, 0.4]
    assert backoff_s(50) == 5.0
