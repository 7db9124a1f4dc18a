"""The watcher's schedules role against real Postgres and Redis, with an injected clock: exactly
one task per tick however many watchers run, catch-up after downtime, the overlap policies
with a long-running task, pause and resume, and apply."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import uuid
from typing import Any

import pytest

from taskstream.services.watcher.watcher import Watcher
from taskstream.shared import config as config_mod
from taskstream.shared import schedule_ops
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.domain import Outcome
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.conftest import counter_value
from tests.helpers import query

MINUTE = dt.timedelta(minutes=1)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, by: dt.timedelta) -> None:
        self.now += by


async def put(db: Database, config: Config, name: str, **body: Any) -> Any:
    body.setdefault("task", {"type": "noop", "payload": {"schedule": name}})
    req = schedule_ops.parse_request(body)
    return await schedule_ops.put(db, name, req, config.tasks)


async def fire_all(watcher: Watcher) -> int:
    """Run the schedules role until nothing more has come; the ticks that made a task."""
    made = 0
    while True:
        fired = await watcher.schedules.run_once()
        made += fired.enqueued + fired.caught_up
        if not fired.more:
            return made


async def runs(config: Config, name: str) -> list[dt.datetime]:
    """The ticks of the tasks a schedule made, in task order (ids are time-ordered)."""
    rows = await query(
        config.stores.database_url,
        "SELECT scheduled_for FROM tasks WHERE schedule = $1 ORDER BY id",
        name,
    )
    return [r["scheduled_for"] for r in rows]


async def first_tick(db: Database, name: str) -> dt.datetime:
    stored = await db.get_schedule(name)
    assert stored is not None and stored.next_tick is not None
    return stored.next_tick


@pytest.fixture
async def clock(db: Database) -> Clock:
    return Clock(await db.now())


@pytest.fixture
def watcher(
    config: Config, db: Database, streams: Streams, metrics: Metrics, clock: Clock
) -> Watcher:
    return Watcher(config, db, streams, metrics, clock=clock)


async def test_a_minutely_schedule_over_a_simulated_day_makes_exactly_1440_tasks(
    config: Config, db: Database, watcher: Watcher, clock: Clock, streams: Streams
) -> None:
    await put(db, config, "minutely", cron="* * * * *", overlap="allow")
    tick = await first_tick(db, "minutely")
    clock.now = tick + dt.timedelta(seconds=1.5)  # each pass a little after its tick
    for _ in range(1440):
        assert await fire_all(watcher) == 1
        clock.advance(MINUTE)
    made = await runs(config, "minutely")
    assert len(made) == len(set(made)) == 1440
    assert made == [tick + k * MINUTE for k in range(1440)]
    view = await schedule_ops.get(db, "minutely")
    assert view is not None
    assert (view.counts.enqueued, view.counts.caught_up, view.counts.missed) == (1440, 0, 0)
    assert sum((await streams.lengths()).values()) == 1440  # each published once


async def test_a_tick_is_never_released_before_its_time_plus_jitter(
    config: Config, db: Database, watcher: Watcher, clock: Clock
) -> None:
    await put(db, config, "jittery", every="1h", jitter="10m")
    stored = await db.get_schedule("jittery")
    assert stored is not None and stored.next_tick and stored.next_release
    assert stored.next_tick <= stored.next_release < stored.next_tick + dt.timedelta(minutes=10)
    clock.now = stored.next_release - dt.timedelta(milliseconds=1)
    assert await fire_all(watcher) == 0
    clock.now = stored.next_release
    assert await fire_all(watcher) == 1
    assert await runs(config, "jittery") == [stored.next_tick]


async def test_two_watchers_racing_make_one_task_per_tick(
    config: Config, streams: Streams, metrics: Metrics, clock: Clock, db: Database
) -> None:
    names = [f"race-{i}" for i in range(6)]
    for name in names:
        await put(db, config, name, every="1m", overlap="allow")
    start = min([await first_tick(db, n) for n in names])
    dbs = [await Database.connect(config.stores.database_url, min_size=2, max_size=4)
           for _ in range(2)]  # fmt: skip
    try:
        watchers = [Watcher(config, d, streams, metrics, clock=clock) for d in dbs]
        clock.now = start
        for _ in range(60):
            clock.advance(MINUTE)
            await asyncio.gather(*(fire_all(w) for w in watchers for _ in range(2)))
    finally:
        for d in dbs:
            await d.close()
    for name in names:
        made = await runs(config, name)
        assert len(made) == len(set(made)) == 61, name  # one task per tick, no tick doubled
    rows = await query(config.stores.database_url, "SELECT count(*) AS n FROM schedule_runs")
    assert rows[0]["n"] == 6 * 61


async def test_a_tick_already_made_is_never_made_again(
    config: Config, db: Database, watcher: Watcher, clock: Clock
) -> None:
    # Even a watcher that believes an old tick is still to come (its view of the schedule
    # is stale) makes no second task for it: the tick's identity is unique in Postgres.
    await put(db, config, "once", every="1m", overlap="allow")
    tick = await first_tick(db, "once")
    clock.now = tick
    assert await fire_all(watcher) == 1
    await query(
        config.stores.database_url,
        "UPDATE schedules SET next_tick = $1, next_release = $1 WHERE name = 'once'",
        tick,
    )
    assert await fire_all(watcher) == 0
    assert await runs(config, "once") == [tick]
    view = await schedule_ops.get(db, "once")
    assert view is not None and view.counts.enqueued == 1


async def test_a_watcher_down_3_hours_with_catchup_1h_enqueues_the_last_hour_and_counts_the_rest_missed(  # noqa: E501
    config: Config, db: Database, watcher: Watcher, clock: Clock, metric_reader: Any
) -> None:
    await put(db, config, "hourly-report", every="1m", catchup="1h", overlap="allow")
    tick = await first_tick(db, "hourly-report")
    clock.now = tick + dt.timedelta(hours=3)  # no watcher ran since just before the first tick
    made = await fire_all(watcher)
    ticks = await runs(config, "hourly-report")
    last_hour = [tick + dt.timedelta(hours=2) + k * MINUTE for k in range(61)]
    assert made == 61 and ticks == last_hour  # oldest first
    view = await schedule_ops.get(db, "hourly-report")
    assert view is not None
    # The tick just now is on time; the hour before it caught up; the two hours before missed.
    assert (view.counts.enqueued, view.counts.caught_up, view.counts.missed) == (1, 60, 120)
    assert counter_value(metric_reader, "schedule_runs", outcome="missed") == 120
    assert counter_value(metric_reader, "schedule_runs", outcome="caught_up") == 60
    assert view.next_runs[0] == clock.now + MINUTE


async def long_running(config: Config, db: Database, name: str) -> uuid.UUID:
    """Claim the schedule's latest task as an executor would, and leave it running."""
    rows = await query(
        config.stores.database_url,
        "SELECT id FROM tasks WHERE schedule = $1 ORDER BY id DESC LIMIT 1",
        name,
    )
    task_id = rows[0]["id"]
    assert await db.claim([task_id], [1], ["0-1"], "executor-x")
    return task_id  # type: ignore[no-any-return]


async def statuses(config: Config, name: str) -> list[tuple[dt.datetime, str]]:
    rows = await query(
        config.stores.database_url,
        "SELECT scheduled_for, status FROM tasks WHERE schedule = $1 ORDER BY scheduled_for",
        name,
    )
    return [(r["scheduled_for"], r["status"]) for r in rows]


async def tick_by_tick(watcher: Watcher, clock: Clock, t0: dt.datetime, k: int) -> None:
    clock.now = t0 + k * MINUTE
    await fire_all(watcher)


@pytest.mark.parametrize("policy", ["skip", "buffer_one", "allow", "cancel_previous"])
async def test_each_overlap_policy_with_a_long_running_task(
    policy: str, config: Config, db: Database, watcher: Watcher, clock: Clock
) -> None:
    await put(db, config, "job", every="1m", overlap=policy)
    t0 = await first_tick(db, "job")
    await tick_by_tick(watcher, clock, t0, 0)
    running = await long_running(config, db, "job")  # tick 0 runs for a long time
    await tick_by_tick(watcher, clock, t0, 1)
    await tick_by_tick(watcher, clock, t0, 2)
    seen = await statuses(config, "job")
    view = await schedule_ops.get(db, "job")
    assert view is not None
    if policy == "skip":  # nothing starts while it runs
        assert seen == [(t0, "running")] and view.counts.skipped == 2
    elif policy == "buffer_one":  # one waits (tick 1), the next is skipped
        assert seen == [(t0, "running")] and view.buffered_for == t0 + MINUTE
        assert view.counts.skipped == 1
    elif policy == "allow":
        assert seen == [(t0, "running"), (t0 + MINUTE, "queued"), (t0 + 2 * MINUTE, "queued")]
    else:  # the started one is never cancelled; tick 1 had not started when tick 2 came
        assert seen == [
            (t0, "running"),
            (t0 + MINUTE, "cancelled"),
            (t0 + 2 * MINUTE, "queued"),
        ]
    # The long task finishes; the next pass (still before tick 3) releases a buffered tick.
    assert await db.complete([Outcome(task_id=running, attempt=1, kind="succeeded")])
    clock.advance(dt.timedelta(seconds=10))
    await fire_all(watcher)
    await tick_by_tick(watcher, clock, t0, 3)
    after = await statuses(config, "job")
    if policy == "skip":
        assert after == [(t0, "succeeded"), (t0 + 3 * MINUTE, "queued")]
    elif policy == "buffer_one":
        # Tick 1 ran late once tick 0 finished; tick 3 waits behind it.
        assert after == [(t0, "succeeded"), (t0 + MINUTE, "queued")]
        view = await schedule_ops.get(db, "job")
        assert view is not None and view.buffered_for == t0 + 3 * MINUTE
    elif policy == "allow":
        assert len(after) == 4
    else:
        assert after[-2:] == [(t0 + 2 * MINUTE, "cancelled"), (t0 + 3 * MINUTE, "queued")]


async def test_a_paused_schedule_makes_nothing_and_records_nothing_missed(
    config: Config, db: Database, watcher: Watcher, clock: Clock
) -> None:
    await put(db, config, "nightly", every="1m", overlap="allow")
    t0 = await first_tick(db, "nightly")
    paused = await schedule_ops.pause(db, "nightly", "maintenance window")
    assert paused is not None and paused.state == "paused" and paused.note == "maintenance window"
    assert paused.next_runs == []
    clock.now = t0 + dt.timedelta(hours=2)
    assert await fire_all(watcher) == 0
    resumed = await schedule_ops.resume(db, "nightly", now=clock.now)
    assert resumed is not None and resumed.state == "active" and resumed.note is None
    # Resume starts from the next tick after the resume: none of the ticks that passed while
    # it was paused is fired, or counted missed.
    assert resumed.next_runs[0] == clock.now + MINUTE and resumed.counts.missed == 0
    clock.now = resumed.next_runs[0]
    assert await fire_all(watcher) == 1
    view = await schedule_ops.get(db, "nightly")
    assert view is not None and (view.counts.enqueued, view.counts.missed) == (1, 0)
    assert await runs(config, "nightly") == [resumed.next_runs[0]]


async def test_trigger_runs_now_whatever_the_pause_and_overlap(
    config: Config, db: Database, streams: Streams
) -> None:
    await put(db, config, "manual", cron="0 3 * * *", timezone="Europe/Berlin", paused=True)
    publish = schedule_ops.stream_publisher(streams)
    first = await schedule_ops.trigger(db, "manual", config.tasks, publish)
    second = await schedule_ops.trigger(db, "manual", config.tasks, publish)
    assert first is not None and second is not None
    task = await db.get_task(second.task_id)
    assert task is not None and task.status == "queued"
    assert (task.schedule, task.scheduled_for) == ("manual", second.scheduled_for)
    view = await schedule_ops.get(db, "manual")
    assert view is not None and view.counts.triggered == 2 and view.state == "paused"
    assert view.last_run is not None and view.last_run.task_id == second.task_id
    assert [e[1]["t"] for e in await streams.entries("default")] == [
        str(first.task_id),
        str(second.task_id),
    ]
    assert await schedule_ops.trigger(db, "nope", config.tasks, publish) is None


async def test_a_replace_keeps_the_next_tick_unless_the_timing_changed(
    config: Config, db: Database
) -> None:
    created = await put(db, config, "r", every="1h", overlap="skip")
    again = await put(db, config, "r", every="1h", overlap="skip")
    assert (created.change, again.change) == ("created", "unchanged")
    assert again.updated_at == created.updated_at
    policy = await put(db, config, "r", every="1h", overlap="allow")
    assert policy.change == "updated" and policy.next_runs == created.next_runs
    timing = await put(db, config, "r", every="30m", overlap="allow")
    assert timing.change == "updated"
    assert timing.next_runs[1] - timing.next_runs[0] == dt.timedelta(minutes=30)
    # A PUT without `paused` keeps a pause made by hand; one that says paused: false resumes.
    await schedule_ops.pause(db, "r", "hold")
    kept = await put(db, config, "r", every="30m", overlap="allow")
    assert (kept.change, kept.state, kept.note) == ("unchanged", "paused", "hold")
    resumed = await put(db, config, "r", every="30m", overlap="allow", paused=False)
    assert resumed.state == "active"


APPLY = {
    "schedules": {
        "nightly-report": {
            "cron": "0 3 * * *",
            "timezone": "Europe/Berlin",
            "task": {"type": "report.build", "payload": {"kind": "daily"}, "max_attempts": 3},
            "catchup": "6h",
        },
        "heartbeat": {"every": "30s", "task": {"type": "noop"}, "jitter": "5s"},
    }
}


async def test_apply_twice_changes_nothing_the_second_time(config: Config, db: Database) -> None:
    first = await schedule_ops.apply(db, APPLY, config.tasks, prune=False)
    assert (first.created, first.updated) == (["heartbeat", "nightly-report"], [])
    before = await query(config.stores.database_url, "SELECT * FROM schedules ORDER BY name")
    second = await schedule_ops.apply(db, APPLY, config.tasks, prune=False)
    assert (second.created, second.updated, second.unchanged) == (
        [],
        [],
        ["heartbeat", "nightly-report"],
    )
    after = await query(config.stores.database_url, "SELECT * FROM schedules ORDER BY name")
    assert [dict(r) for r in after] == [dict(r) for r in before]  # not one column written
    # A change is an update; --prune deletes what the file no longer names.
    smaller = {"schedules": {"heartbeat": {"every": "1m", "task": {"type": "noop"}}}}
    dry = await schedule_ops.apply(db, smaller, config.tasks, prune=True, dry_run=True)
    assert (dry.updated, dry.deleted, dry.dry_run) == (["heartbeat"], ["nightly-report"], True)
    assert len(await db.list_schedules()) == 2  # a dry run changes nothing
    done = await schedule_ops.apply(db, smaller, config.tasks, prune=True)
    assert (done.updated, done.deleted) == (["heartbeat"], ["nightly-report"])
    assert [s.name for s in await db.list_schedules()] == ["heartbeat"]


async def test_two_applies_at_once_make_one_copy_of_each_schedule(config: Config) -> None:
    dbs = [await Database.connect(config.stores.database_url, min_size=1, max_size=2)
           for _ in range(4)]  # fmt: skip
    try:
        results = await asyncio.gather(
            *(schedule_ops.apply(d, APPLY, config.tasks, prune=True) for d in dbs)
        )
    finally:
        for d in dbs:
            await d.close()
    created = collections.Counter(n for r in results for n in r.created)
    assert created == {"heartbeat": 1, "nightly-report": 1}
    assert all(not r.updated and not r.deleted for r in results)
    rows = await query(config.stores.database_url, "SELECT name FROM schedules ORDER BY name")
    assert [r["name"] for r in rows] == ["heartbeat", "nightly-report"]


async def test_a_bad_apply_file_names_the_field_and_writes_nothing(
    config: Config, db: Database
) -> None:
    bad = {
        "schedules": {
            "ok": {"every": "1m", "task": {"type": "noop"}},
            "broken": {"cron": "0 25 * * *", "task": {"type": "noop"}},
        }
    }
    with pytest.raises(schedule_ops.InvalidSchedule) as info:
        await schedule_ops.apply(db, bad, config.tasks, prune=False)
    assert info.value.field == "schedules.broken.cron"
    assert await db.list_schedules() == []


async def test_schedule_runs_are_kept_bounded(
    config: Config, db: Database, watcher: Watcher, clock: Clock
) -> None:
    from taskstream.shared.db import schedules as schedules_db

    await put(db, config, "busy", every="1s", overlap="allow", catchup="2h")
    tick = await first_tick(db, "busy")
    clock.now = tick + dt.timedelta(seconds=schedules_db.KEEP_RUNS + 200)
    await fire_all(watcher)
    rows = await query(
        config.stores.database_url, "SELECT count(*) AS n FROM schedule_runs WHERE schedule='busy'"
    )
    assert rows[0]["n"] == schedules_db.KEEP_RUNS
    assert len(await runs(config, "busy")) == schedules_db.KEEP_RUNS + 201


async def test_gauges_count_schedules_by_state(
    config: Config, db: Database, streams: Streams, metrics: Metrics, metric_reader: Any
) -> None:
    from taskstream.services.janitor.janitor import Janitor

    await put(db, config, "a", every="1m")
    await put(db, config, "b", every="1m", paused=True)
    await Janitor(config_mod.replace(config), db, streams, metrics, name="j").gauges.run_once()
    assert counter_value(metric_reader, "schedules", state="active") == 1
    assert counter_value(metric_reader, "schedules", state="paused") == 1
    assert counter_value(metric_reader, "schedules", state="ended") == 0


async def test_a_full_batch_of_waiting_buffered_ticks_does_not_spin(
    config: Config, db: Database, streams: Streams, metrics: Metrics, clock: Clock
) -> None:
    # Schedules whose buffered tick waits on a run that is still going change nothing in a
    # pass: a full batch of them must not make the role go again at once, forever.
    small = config_mod.replace(config, schedule_batch=2)
    watcher = Watcher(small, db, streams, metrics, clock=clock)
    for name in ("b1", "b2"):
        await put(db, config, name, every="1m", overlap="buffer_one")
    t0 = max([await first_tick(db, n) for n in ("b1", "b2")])
    clock.now = t0
    await fire_all(watcher)
    for name in ("b1", "b2"):
        await long_running(config, db, name)
    clock.now = t0 + MINUTE
    await fire_all(watcher)  # both buffer their tick 1
    clock.advance(dt.timedelta(seconds=5))
    fired = await watcher.schedules.run_once()
    assert not fired.more and fired.enqueued == 0


async def test_one_pass_looks_at_no_more_than_schedule_batch_ticks_in_all(
    config: Config, db: Database, streams: Streams, metrics: Metrics, clock: Clock
) -> None:
    small = config_mod.replace(config, schedule_batch=5)
    watcher = Watcher(small, db, streams, metrics, clock=clock)
    for name in ("p1", "p2"):
        await put(db, config, name, every="1m", overlap="skip")
    t0 = max([await first_tick(db, n) for n in ("p1", "p2")])
    clock.now = t0 + 3 * MINUTE  # four ticks each have come: one runs, three are skipped
    first = await watcher.schedules.run_once()
    # Five ticks looked at: p1's four (one fired, three skipped) and p2's first.
    assert (first.enqueued + first.caught_up, first.skipped, first.more) == (2, 3, True)
    second = await watcher.schedules.run_once()
    assert (second.enqueued + second.caught_up, second.skipped, second.more) == (0, 3, False)
