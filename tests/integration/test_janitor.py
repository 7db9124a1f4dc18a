"""The janitor against real Redis and Postgres: reclaim, poison, orphans, trimming, consumers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from taskstream.services.executor.executor import Executor
from taskstream.services.janitor.janitor import Janitor
from taskstream.shared import config as config_mod
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.domain import Delivery
from taskstream.shared.handlers import Context
from taskstream.shared.keys import GROUP
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.conftest import counter_value
from tests.factories import enqueue, new_task
from tests.helpers import query as execute
from tests.integration.test_executor import registry_with


def janitor(config: Config, db: Database, streams: Streams, metrics: Metrics) -> Janitor:
    return Janitor(config, db, streams, metrics, name="janitor-test")


async def stall(streams: Streams, db: Database, consumer: str, n: int = 1) -> list[Any]:
    """Read ``n`` entries as ``consumer`` and claim them, as an executor that then dies."""
    got = await streams.read(consumer, {"default": n})
    deliveries = [d for d in got["default"] if isinstance(d, Delivery)]
    await db.claim(
        [d.task_id for d in deliveries],
        [d.attempt for d in deliveries],
        [d.entry_id for d in deliveries],
        consumer,
    )
    return deliveries


async def test_expired_lease_is_a_failed_attempt_and_the_old_worker_is_fenced(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    config = config_mod.replace(config, vis_timeout_ms=1)
    [task_id] = await enqueue(db, streams, [new_task(config)])
    [dead_worker] = await stall(streams, db, "worker-that-died")
    await asyncio.sleep(0.005)  # idle longer than the 1 ms visibility timeout

    report = await janitor(config, db, streams, metrics).run_once()

    assert report.reclaimed == 1
    view = await db.get_task(task_id)
    assert view is not None and (view.status, view.attempt) == ("retrying", 2)
    assert view.last_error is not None and view.last_error.type == "LeaseExpired"
    [attempt] = await db.attempts(task_id)
    assert (attempt["outcome"], attempt["consumer"]) == ("reclaimed", "worker-that-died")
    assert sum((await streams.pending_count()).values()) == 0
    # The old worker wakes up and reports success: fenced.
    from taskstream.shared.domain import Outcome

    late = Outcome(task_id=task_id, attempt=dead_worker.attempt, kind="succeeded")
    assert await db.complete([late]) == set()


async def test_live_long_task_is_never_reclaimed_while_its_heartbeat_runs(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    # The handler blocks the event loop for 3 times the visibility timeout; the heartbeat runs in a
    # thread of its own, so the entry's idle time stays short all along.
    config = config_mod.replace(config, vis_timeout_ms=800)
    idle_seen: list[int] = []
    sync = redis.Redis.from_url(config.stores.redis_url)

    async def cpu_bound(payload: Any, ctx: Context) -> None:
        deadline = time.monotonic() + 2.4
        while time.monotonic() < deadline:
            time.sleep(0.1)  # noqa: ASYNC251 - blocks the loop on purpose
            [item] = sync.xpending_range(streams.keys.stream("default"), GROUP, "-", "+", 1)
            idle_seen.append(int(item["time_since_delivered"]))

    [task_id] = await enqueue(db, streams, [new_task(config, "cpu_bound")])
    await Executor(
        config, db, streams, registry_with(cpu_bound=cpu_bound), metrics, consumer="c"
    ).run_once()
    sync.close()

    assert idle_seen and max(idle_seen) < config.lease.vis_timeout_ms
    view = await db.get_task(task_id)
    assert view is not None and view.status == "succeeded" and view.attempt == 1


async def test_entry_delivered_too_often_is_poison_and_dead_lettered(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    config = config_mod.replace(config, vis_timeout_ms=1, max_deliveries=3, max_attempts=50)
    [task_id] = await enqueue(db, streams, [new_task(config, max_attempts=50)])
    [d] = await stall(streams, db, "crasher")
    # It kept killing its worker: delivered again and again without ever returning.
    for _ in range(3):
        await streams._r.xclaim(streams.keys.stream("default"), GROUP, "crasher", 0, [d.entry_id])
    await asyncio.sleep(0.005)

    report = await janitor(config, db, streams, metrics).run_once()

    assert report.poisoned == 1
    view = await db.get_task(task_id)
    assert view is not None and view.status == "dead"
    [letter] = await execute(
        config.stores.database_url, "SELECT reason FROM dead_letters WHERE task_id = $1", task_id
    )
    assert letter["reason"] == "poison"


async def test_delivered_but_never_claimed_entry_is_sent_again(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    config = config_mod.replace(config, vis_timeout_ms=1)
    [task_id] = await enqueue(db, streams, [new_task(config)])
    await streams.read("died-before-claim", {"default": 1})
    await asyncio.sleep(0.005)

    report = await janitor(config, db, streams, metrics).run_once()

    assert report.redelivered == 1
    ran = await Executor(config, db, streams, registry_with(), metrics, consumer="c").run_once()
    assert ran == 1
    view = await db.get_task(task_id)
    assert view is not None and (view.status, view.attempt) == ("succeeded", 1)


async def test_stale_and_undecodable_entries_are_settled_one_by_one(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    config = config_mod.replace(config, vis_timeout_ms=1, reclaim_batch=2)
    ids = await enqueue(db, streams, [new_task(config) for _ in range(3)])
    await streams._r.xadd(streams.keys.stream("default"), {"junk": "x"})
    await streams.read("gone", {"default": 10})
    await db.cancel_task(ids[0])  # stale: cancelled after delivery (never claimed)
    await asyncio.sleep(0.005)

    report = await janitor(config, db, streams, metrics).run_once()

    assert report.bad == 1
    assert report.dropped == 1
    assert report.redelivered == 2
    [bad] = await execute(config.stores.database_url, "SELECT fields, reason FROM dead_entries")
    assert bad["reason"] == "undecodable" and "junk" in bad["fields"]
    assert sum((await streams.pending_count()).values()) == 0


async def test_running_task_whose_entry_redis_lost_is_recovered(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    config = config_mod.replace(config, vis_timeout_ms=1000)
    [task_id] = await enqueue(db, streams, [new_task(config, timeout_ms=60_000)])
    await stall(streams, db, "worker")
    await streams.delete_namespace()  # Redis restarted empty: the pending entry is gone
    await streams.ensure_groups()

    # The worker may still be running it (its heartbeat says it is alive): nothing happens
    # before its timeout has passed (by Postgres's clock).
    await streams._r.set(streams.keys.alive("worker"), "1", px=60_000)
    await execute(
        config.stores.database_url,
        "UPDATE tasks SET updated_at = now() - interval '60 seconds', "
        "started_at = now() - interval '60 seconds'",
    )
    assert (await janitor(config, db, streams, metrics).run_once()).orphans == 0
    view = await db.get_task(task_id)
    assert view is not None and view.status == "running"

    await execute(
        config.stores.database_url,
        "UPDATE tasks SET started_at = now() - interval '62 seconds'",
    )
    report = await janitor(config, db, streams, metrics).run_once()

    assert report.orphans == 1
    view = await db.get_task(task_id)
    assert view is not None and (view.status, view.attempt) == ("retrying", 2)
    assert view.last_error is not None and view.last_error.type == "EntryLost"


async def test_trimming_removes_only_acknowledged_entries(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    await enqueue(db, streams, [new_task(config) for _ in range(6)])
    got = await streams.read("c", {"default": 4})
    delivered = got["default"]
    await streams.ack([("default", d.entry_id) for d in delivered[:1] + delivered[2:4]])
    # Acked: 1st, 3rd, 4th. Pending: 2nd. Undelivered: 5th, 6th.
    report = await janitor(config, db, streams, metrics).run_once()

    assert report.trimmed == 1  # only the first: the 2nd is pending and guards the rest
    left = [i for i, _ in await streams.entries("default")]
    assert left[0] == delivered[1].entry_id and len(left) == 5
    await streams.ack([("default", delivered[1].entry_id)])
    report = await janitor(config, db, streams, metrics).run_once()
    assert report.trimmed == 3  # 2nd, 3rd, 4th; the two undelivered stay
    assert len(await streams.entries("default")) == 2
    ran = await Executor(config, db, streams, registry_with(), metrics, consumer="c2").run_once()
    assert ran == 2


async def test_idle_consumers_are_removed_only_with_nothing_pending(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    config = config_mod.replace(config, consumer_idle_ms=1, vis_timeout_ms=60_000)
    await enqueue(db, streams, [new_task(config) for _ in range(2)])
    [done] = (await streams.read("finished", {"default": 1}))["default"]
    await streams.ack([("default", done.entry_id)])
    await streams.read("busy", {"default": 1})  # holds a pending entry
    await asyncio.sleep(0.005)

    report = await janitor(config, db, streams, metrics).run_once()

    assert report.consumers_removed == 1
    names = {c.name for c in await streams.consumers()}
    assert names == {"busy"}


async def test_two_janitors_at_once_do_no_double_work(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    config = config_mod.replace(config, vis_timeout_ms=1)
    ids = await enqueue(db, streams, [new_task(config) for _ in range(40)])
    await stall(streams, db, "dead-worker", n=40)
    await asyncio.sleep(0.005)

    a, b = (Janitor(config, db, streams, metrics, name=f"janitor-{i}") for i in range(2))
    ra, rb = await asyncio.gather(a.run_once(), b.run_once())

    assert ra.reclaimed + rb.reclaimed == 40
    rows = await execute(
        config.stores.database_url,
        "SELECT count(*) AS n FROM task_attempts WHERE task_id = ANY($1::uuid[])",
        ids,
    )
    assert rows[0]["n"] == 40  # one failed attempt each, never two
    attempts = {
        r["attempt"] for r in await execute(config.stores.database_url, "SELECT attempt FROM tasks")
    }
    assert attempts == {2}


async def test_queue_gauges_are_sampled_by_the_janitor(
    config: Config,
    db: Database,
    streams: Streams,
    metrics: Metrics,
    metric_reader: InMemoryMetricReader,
) -> None:
    await enqueue(db, streams, [new_task(config, priority="high") for _ in range(5)])
    await streams.read("busy", {"high": 2})

    await janitor(config, db, streams, metrics).run_once()

    def gauge(name: str) -> float:
        return counter_value(metric_reader, name, priority="high")

    assert gauge("queue_depth") == 3
    assert gauge("pending_entries") == 2
    assert gauge("stream_length") == 5
    assert gauge("consumers") == 1
    assert gauge("dlq_depth") == 0
    assert counter_value(metric_reader, "queue_depth", priority="low") == 0


async def test_a_pass_right_after_redis_lost_everything_does_not_fail(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    # Redis restarted empty and no one has recreated the streams and the group yet: every
    # command of the pass meets a missing key or group. The janitor must go on (it recreates
    # them), not die: a dead janitor reclaims nothing, ever.
    await enqueue(db, streams, [new_task(config) for _ in range(3)])
    await stall(streams, db, "worker", n=3)
    await streams.delete_namespace()

    report = await janitor(config, db, streams, metrics).run_once()

    assert report.reclaimed == report.trimmed == 0
    groups = await streams.consumers()  # the groups are back, so the next pass works
    assert groups == []
    assert (await janitor(config, db, streams, metrics).run_once()).reclaimed == 0


async def test_the_janitor_survives_data_lost_in_the_middle_of_a_pass(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    # Redis loses the stream between two commands of one pass: the loop logs it, recreates
    # the groups and runs the next pass instead of ending the service.
    config = config_mod.replace(config, janitor_interval_ms=10)
    stop = asyncio.Event()
    passes = 0

    class LosingStreams(Streams):
        async def trim_acknowledged(self, priority: str) -> int:
            nonlocal passes
            if priority == "critical":
                passes += 1
                if passes == 1:
                    await self.delete_namespace()
                    raise redis.ResponseError("NOGROUP No such key or consumer group")
                if passes == 3:
                    stop.set()
            return await super().trim_acknowledged(priority)

    losing = LosingStreams(streams._r, streams.keys)
    await asyncio.wait_for(Janitor(config, db, losing, metrics, name="j").run(stop), timeout=10)

    assert passes == 3
    assert await streams.epoch() is not None  # the groups (and their epoch) were recreated
