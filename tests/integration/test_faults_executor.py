"""Issue 9's executor faults, each against the real Redis and Postgres: leases on everything an
executor holds, deliveries that never reached a handler, handlers that raise BaseException,
sync handlers in their own threads, and a stop during an outage."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from taskstream.services.executor.executor import Executor
from taskstream.services.janitor.janitor import Janitor
from taskstream.shared import config as config_mod
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.handlers import Context
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.factories import enqueue, new_task
from tests.integration.test_executor import registry_with
from tests.integration.test_janitor import stall
from tests.proxy import Proxy


async def test_an_entry_waiting_behind_a_long_handler_keeps_its_lease_and_runs_once(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    # One handler slot, one prefetched entry: the second task waits (claimed, not running)
    # four times the visibility timeout while a janitor runs. Its lease must hold.
    config = config_mod.replace(
        config, worker_pool=1, prefetch=1, vis_timeout_ms=500, janitor_interval_ms=50
    )
    runs: list[int] = []

    async def sleeper(payload: Any, ctx: Context) -> None:
        await asyncio.sleep(2)

    async def counted(payload: Any, ctx: Context) -> None:
        runs.append(ctx.attempt)

    registry = registry_with(slow=sleeper, counted=counted)
    [slow, once] = await enqueue(
        db,
        streams,
        [new_task(config, "slow", max_attempts=1), new_task(config, "counted", max_attempts=1)],
    )
    stop = asyncio.Event()
    janitor = asyncio.create_task(Janitor(config, db, streams, metrics, name="j").run(stop))
    try:
        await Executor(config, db, streams, registry, metrics, consumer="c").run_once()
        await asyncio.sleep(0.6)  # one more visibility timeout with the janitor running
    finally:
        stop.set()
        await janitor
    for task_id in (slow, once):
        view = await db.get_task(task_id)
        assert view is not None and (view.status, view.attempt) == ("succeeded", 1)
    assert runs == [1]


async def test_a_job_whose_lease_was_taken_while_it_waited_is_never_started(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    config = config_mod.replace(config, worker_pool=1, prefetch=1, vis_timeout_ms=300)
    runs: list[str] = []
    taken, started = asyncio.Event(), asyncio.Event()

    async def slow(payload: Any, ctx: Context) -> None:
        runs.append("slow")
        started.set()
        await asyncio.wait_for(taken.wait(), 5)
        await asyncio.sleep(0.3)  # three heartbeats: the loss is seen

    async def counted(payload: Any, ctx: Context) -> None:
        runs.append("counted")

    registry = registry_with(slow=slow, counted=counted)
    await enqueue(db, streams, [new_task(config, "slow"), new_task(config, "counted")])
    executor = Executor(config, db, streams, registry, metrics, consumer="c")
    run = asyncio.create_task(executor.run_once())
    await asyncio.wait_for(started.wait(), 5)
    # Someone else (a janitor after an outage, say) takes both entries over.
    step = await streams.reclaim("default", "janitor", 0, "0-0", 10)
    assert len(step.entries) == 2
    taken.set()
    await asyncio.wait_for(run, 10)
    assert runs == ["slow"]


async def test_a_postgres_outage_does_not_turn_a_stalled_task_into_poison(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    # Each janitor pass during the outage takes the entry over and fails at Postgres; those
    # takeovers never reached a handler, so they must not count toward MAX_DELIVERIES.
    config = config_mod.replace(config, vis_timeout_ms=100, max_deliveries=3, max_attempts=5)
    [task_id] = await enqueue(db, streams, [new_task(config)])
    await stall(streams, db, "died")
    proxy = Proxy.to(config.stores.database_url)
    await proxy.start()
    far = await Database.connect(proxy.url(config.stores.database_url), min_size=0, max_size=2)
    janitor = Janitor(config, far, streams, metrics, name="j")
    try:
        await proxy.down()
        for _ in range(4):
            await asyncio.sleep(0.11)
            with pytest.raises(Exception, match="not reachable"):
                await janitor.run_once()
        await proxy.up()
        await asyncio.sleep(0.11)
        report = await janitor.run_once()
    finally:
        await far.close()
        await proxy.close()
    assert (report.reclaimed, report.poisoned) == (1, 0)
    view = await db.get_task(task_id)
    assert view is not None and view.status == "retrying"


@pytest.mark.parametrize("raised", [asyncio.CancelledError, KeyboardInterrupt, SystemExit])
async def test_a_handler_raising_a_base_exception_fails_its_attempt_and_the_runner_lives(
    config: Config, db: Database, streams: Streams, metrics: Metrics, raised: type[BaseException]
) -> None:
    config = config_mod.replace(config, worker_pool=2, prefetch=2)

    async def rude(payload: Any, ctx: Context) -> None:
        raise raised("from the handler")

    bad = [new_task(config, "rude", max_attempts=1) for _ in range(4)]
    good = [new_task(config) for _ in range(3)]
    await enqueue(db, streams, [*bad, *good])
    executor = Executor(config, db, streams, registry_with(rude=rude), metrics, consumer="c")
    ran = await asyncio.wait_for(executor.run_once(), 10)

    assert ran == 7
    for t in bad:
        view = await db.get_task(t.id)
        assert view is not None and view.status == "dead"
        assert view.last_error is not None and view.last_error.type == raised.__name__
    for t in good:
        view = await db.get_task(t.id)
        assert view is not None and view.status == "succeeded"


async def test_sync_handlers_get_a_thread_each_not_asyncio_s_small_pool(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    # 32 blocking handlers of 0.5 s with a 2 s timeout: asyncio's default pool (6 threads on
    # two cores) would run them in six rounds and time most of them out.
    config = config_mod.replace(config, worker_pool=32, prefetch=0)

    def blocking(payload: Any, ctx: Context) -> None:
        time.sleep(0.5)

    tasks = [new_task(config, "blocking", timeout_ms=2000, max_attempts=1) for _ in range(32)]
    await enqueue(db, streams, tasks)
    executor = Executor(
        config, db, streams, registry_with(blocking=blocking), metrics, consumer="c"
    )
    started = time.monotonic()
    await executor.run_once()

    assert time.monotonic() - started < 2
    for t in tasks:
        view = await db.get_task(t.id)
        assert view is not None and view.status == "succeeded"
    assert executor.threads.threads >= 32


async def test_a_timed_out_sync_handler_is_retried_and_its_late_result_dropped(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    config = config_mod.replace(config, worker_pool=2, prefetch=0, retry_base_ms=0)
    returned: list[int] = []

    def slow_first(payload: Any, ctx: Context) -> int:
        if ctx.attempt_number == 1:
            time.sleep(0.6)
        returned.append(ctx.attempt)
        return ctx.attempt

    [task_id] = await enqueue(db, streams, [new_task(config, "slow", timeout_ms=200)])
    executor = Executor(config, db, streams, registry_with(slow=slow_first), metrics, consumer="c")
    await executor.run_once()  # attempt 1 times out
    view = await db.get_task(task_id)
    assert view is not None and view.status == "retrying"
    from taskstream.services.watcher.watcher import Watcher

    await Watcher(config, db, streams, metrics).run_once()
    await executor.run_once()  # attempt 2 runs beside the first, still sleeping
    await asyncio.sleep(0.7)  # the first one returns late

    view = await db.get_task(task_id)
    assert view is not None and (view.status, view.attempt) == ("succeeded", 2)
    [first] = await db.attempts(task_id)
    assert first["outcome"] == "timeout"
    assert sorted(returned) == [1, 2]  # it did return, and was dropped


async def test_a_stop_while_postgres_is_down_exits_promptly_and_acks_nothing(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    config = config_mod.replace(config, shutdown_grace_ms=300)
    await enqueue(db, streams, [new_task(config) for _ in range(3)])
    proxy = Proxy.to(config.stores.database_url)
    await proxy.start()
    far = await Database.connect(proxy.url(config.stores.database_url), min_size=0, max_size=2)
    stop = asyncio.Event()
    executor = Executor(config, far, streams, registry_with(), metrics, consumer="c")
    try:
        await proxy.down()
        run = asyncio.create_task(executor.run(stop))
        await asyncio.sleep(0.5)  # read the entries; the claim keeps failing
        began = time.monotonic()
        stop.set()
        await asyncio.wait_for(run, 5)
        took = time.monotonic() - began
    finally:
        await far.close()
        await proxy.close()
    assert took < 0.3 + 1.5  # the grace period plus one retry pause and a margin
    assert (await streams.pending_count())["default"] == 3  # left pending, never acked
