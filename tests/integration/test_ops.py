"""The operations layer (shared/ops.py) against real Redis and Postgres."""

from __future__ import annotations

import collections
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest

from taskstream.services.watcher.watcher import Watcher
from taskstream.shared import ops
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.domain import PRIORITIES, Outcome
from taskstream.shared.errors import StoreUnavailable
from taskstream.shared.handlers import Context
from taskstream.shared.keys import GROUP, Keys
from taskstream.shared.metrics import Metrics
from taskstream.shared.ops_models import DlqFilter, DlqSelection
from taskstream.shared.streams import Streams
from tests.factories import enqueue, new_task
from tests.helpers import wait_for
from tests.ops_helpers import executor, make_dead

ERROR = msgspec.json.encode({"type": "Boom", "message": "it broke"})


@pytest.fixture
async def pg(config: Config) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(config.stores.database_url)
    yield conn
    await conn.close()


async def snapshot(pg: asyncpg.Connection, streams: Streams) -> tuple[Any, ...]:
    """Everything a dead-letter operation could change."""
    tasks = await pg.fetch("SELECT * FROM tasks ORDER BY id")
    letters = await pg.fetch("SELECT * FROM dead_letters ORDER BY task_id")
    attempts = await pg.fetch("SELECT * FROM task_attempts ORDER BY task_id, attempt")
    entries = [await streams.entries(p) for p in PRIORITIES]
    return (
        [dict(r) for r in tasks],
        [dict(r) for r in letters],
        [dict(r) for r in attempts],
        entries,
    )


# queues


async def test_queues_figures_after_enqueuing_and_reading_some_entries(
    config: Config, db: Database, streams: Streams
) -> None:
    await streams.ensure_groups()
    dead, retry = new_task(config, priority="high"), new_task(config, priority="low")
    delayed = msgspec.structs.replace(
        new_task(config, priority="critical"),
        run_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2),
    )
    await db.insert_tasks([dead, retry, delayed])  # not published: only Postgres figures
    await db.claim([dead.id, retry.id], [1, 1], ["0-1", "0-2"], "w")
    await db.complete(
        [
            Outcome(task_id=dead.id, attempt=1, kind="dead", error=ERROR, reason="non_retryable"),
            Outcome(task_id=retry.id, attempt=1, kind="retry", error=ERROR, delay_ms=60_000),
        ]
    )
    await enqueue(db, streams, [new_task(config) for _ in range(5)])
    read = await streams.read("reader", {"default": 2})
    assert len(read["default"]) == 2

    by = {q.priority: q for q in (await ops.queues(db, streams)).queues}

    d = by["default"]
    assert (d.exists, d.length, d.lag, d.lag_source, d.pending, d.consumers) == (
        True,
        5,
        3,
        "xinfo",
        2,
        1,
    )
    assert d.oldest_pending_age_ms is not None and 0 <= d.oldest_pending_age_ms < 60_000
    assert d.oldest_pending_idle_ms is not None and d.oldest_pending_idle_ms < 60_000
    assert d.oldest_undelivered_age_ms is not None and d.oldest_undelivered_age_ms < 60_000
    assert d.oldest_pending_age_ms >= d.oldest_undelivered_age_ms  # added earlier
    assert (d.retries_waiting, d.delayed_waiting, d.dead_letters) == (0, 0, 0)
    for p in ("critical", "high", "low"):
        q = by[p]
        assert (q.length, q.lag, q.pending, q.consumers) == (0, 0, 0, 0)
        assert q.oldest_pending_age_ms is q.oldest_undelivered_age_ms is None
    assert (by["high"].dead_letters, by["low"].retries_waiting) == (1, 1)
    assert by["critical"].delayed_waiting == 1


async def test_queues_counts_lag_when_redis_reports_none(
    config: Config, db: Database, streams: Streams
) -> None:
    await enqueue(db, streams, [new_task(config) for _ in range(5)])
    await streams.read("reader", {"default": 1})
    entries = await streams.entries("default")
    # A deletion inside the undelivered range makes XINFO GROUPS report lag as nil.
    await streams._r.xdel(streams.keys.stream("default"), entries[2][0])

    [q] = [q for q in (await ops.queues(db, streams)).queues if q.priority == "default"]
    assert (q.lag, q.lag_source, q.length) == (3, "counted", 4)

    [s] = [s for s in await streams.stream_stats(count_cap=2) if s.priority == "default"]
    assert (s.lag, s.lag_source) == (2, "counted_capped")


async def test_queues_of_a_namespace_without_streams(db: Database, streams: Streams) -> None:
    queues = (await ops.queues(db, streams)).queues
    assert [q.priority for q in queues] == list(PRIORITIES)
    assert all(not q.exists and q.length == 0 and q.lag is None for q in queues)
    assert all(q.lag_source == "none" for q in queues)


# pending


async def test_pending_view_joins_entries_with_their_tasks(
    config: Config, db: Database, streams: Streams
) -> None:
    email, report, other = await enqueue(
        db,
        streams,
        [new_task(config, "email"), new_task(config, "report"), new_task(config, "noop")],
    )
    await streams.read("reader-a", {"default": 2})
    await streams.read("reader-b", {"default": 1})
    await streams.read_own("reader-a", 10)  # reading its history again counts a delivery

    entries = (await ops.pending(db, streams)).entries
    assert [e.task_id for e in entries] == [email, report, other]  # oldest first
    assert [(e.consumer, e.deliveries, e.type) for e in entries] == [
        ("reader-a", 2, "email"),
        ("reader-a", 2, "report"),
        ("reader-b", 1, "noop"),
    ]
    for e in entries:
        assert (e.priority, e.attempt, e.task_attempt, e.status, e.stale) == (
            "default",
            1,
            1,
            "queued",
            False,
        )
        assert 0 <= e.idle_ms < 60_000 and 0 <= e.entry_age_ms < 60_000
        assert e.task_age_ms is not None and 0 <= e.task_age_ms < 60_000


async def test_pending_filters_by_priority_consumer_idle_and_limit(
    config: Config, db: Database, streams: Streams
) -> None:
    first, _, third = await enqueue(db, streams, [new_task(config) for _ in range(3)])
    await enqueue(db, streams, [new_task(config, "urgent", priority="critical")])
    await streams.read("reader-a", {"default": 2, "critical": 1})
    await streams.read("reader-b", {"default": 1})
    # Make the first entry look stalled for ten minutes (XCLAIM … IDLE, no delivery counted).
    [(first_entry, _)] = [
        (i, f) for i, f in await streams.entries("default") if f["t"] == str(first)
    ]
    await streams._r.xclaim(
        streams.keys.stream("default"),
        GROUP,
        "reader-a",
        0,
        [first_entry],
        idle=600_000,
        justid=True,
    )

    async def ids(**kw: Any) -> list[uuid.UUID | None]:
        return [e.task_id for e in (await ops.pending(db, streams, **kw)).entries]

    assert len(await ids()) == 4
    assert [e.type for e in (await ops.pending(db, streams, priority="critical")).entries] == [
        "urgent"
    ]
    assert await ids(consumer="reader-b") == [third]
    assert await ids(min_idle_ms=60_000) == [first]
    assert await ids(priority="default", limit=1) == [first]
    assert await ids(priority="high") == []
    assert await ids(consumer="nobody") == []
    [stalled] = (await ops.pending(db, streams, min_idle_ms=60_000)).entries
    assert stalled.idle_ms >= 600_000 and stalled.deliveries == 1


async def test_pending_marks_stale_and_deleted_entries(
    config: Config, db: Database, streams: Streams
) -> None:
    cancelled, deleted, live = await enqueue(db, streams, [new_task(config) for _ in range(3)])
    await streams.read("reader", {"default": 3})
    assert await db.cancel_task(cancelled) is not None
    [entry] = [i for i, f in await streams.entries("default") if f["t"] == str(deleted)]
    await streams._r.xdel(streams.keys.stream("default"), entry)

    by = {e.entry_id: e for e in (await ops.pending(db, streams)).entries}
    assert len(by) == 3
    gone = by[entry]
    assert (gone.task_id, gone.type, gone.stale) == (None, None, True)
    flags = {e.task_id: (e.status, e.stale) for e in by.values() if e.task_id is not None}
    assert flags == {cancelled: ("cancelled", True), live: ("queued", False)}


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"priority": "urgent"}, "priority"),
        ({"limit": 0}, "limit"),
        ({"limit": 100_000}, "limit"),
        ({"min_idle_ms": -1}, "min_idle_ms"),
    ],
)
async def test_pending_rejects_bad_arguments_naming_the_field(
    db: Database, streams: Streams, kw: dict[str, Any], field: str
) -> None:
    with pytest.raises(ops.BadRequest) as err:
        await ops.pending(db, streams, **kw)
    assert err.value.field == field


# task history


async def test_history_of_a_task_that_failed_twice_then_succeeded(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    [task_id] = await enqueue(db, streams, [new_task(config, "flaky", {"fail_first_n": 2})])
    ex = executor(config, db, streams, metrics)
    watcher = Watcher(config, db, streams, metrics)

    async def retry_moved() -> bool:
        return (await watcher.run_once()).moved > 0

    for _ in range(2):
        await ex.run_once()
        await wait_for(retry_moved)  # the backoff (10 ms here) has passed
    await ex.run_once()

    history = await ops.task_history(db, streams, task_id)
    assert history is not None
    assert (history.task.status, history.task.attempt, history.attempts_used) == (
        "succeeded",
        3,
        3,
    )
    assert [(a.attempt, a.outcome, a.consumer) for a in history.attempts] == [
        (1, "failed", "test-1"),
        (2, "failed", "test-1"),
    ]
    assert all(a.error is not None and a.error.type == "FlakyError" for a in history.attempts)
    assert all(a.started_at and a.finished_at for a in history.attempts)
    latest = history.latest
    assert latest is not None
    assert (latest.attempt, latest.outcome, latest.consumer) == (3, "succeeded", "test-1")
    assert latest.started_at and latest.finished_at and latest.error is None
    assert history.dead_letter is None and history.pending is None

    assert await ops.task_history(db, streams, uuid.uuid4()) is None


async def test_history_of_a_running_task_shows_its_pending_entry(
    config: Config, db: Database, streams: Streams
) -> None:
    [task_id] = await enqueue(db, streams, [new_task(config, "slow")])
    [delivery] = (await streams.read("worker-7", {"default": 1}))["default"]
    await db.claim([task_id], [1], [delivery.entry_id], "worker-7")

    history = await ops.task_history(db, streams, task_id)
    assert history is not None and history.attempts == []
    assert history.latest is not None
    assert (history.latest.outcome, history.latest.consumer) == ("running", "worker-7")
    assert history.pending is not None
    assert (history.pending.entry_id, history.pending.consumer, history.pending.stale) == (
        delivery.entry_id,
        "worker-7",
        False,
    )


async def test_history_of_a_dead_task_shows_its_dead_letter(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    ids = await make_dead(config, db, streams, metrics)
    history = await ops.task_history(db, streams, ids["exhausted"][0])
    assert history is not None and history.task.status == "dead"
    assert history.latest is None  # the dying attempt is in the history
    [attempt] = history.attempts
    assert attempt.error is not None and attempt.error.type == "AlwaysFailError"
    assert history.dead_letter is not None
    assert (history.dead_letter.reason, history.dead_letter.attempts) == ("attempts_exhausted", 1)


# dead letters: list


async def test_dlq_list_filters(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    ids = await make_dead(config, db, streams, metrics)

    async def listed(**kw: Any) -> set[uuid.UUID]:
        page = await ops.dlq_list(db, DlqFilter(**kw), limit=100)
        return {d.task_id for d in page.dead_letters}

    assert len(await listed()) == 7
    assert await listed(priority="high") == set(ids["unknown"])
    assert await listed(type="always_fail") == set(ids["exhausted"])
    assert await listed(reason="non_retryable") == set(ids["refused"])
    assert await listed(error="NO HANDLER is registered") == set(ids["unknown"])
    assert await listed(error="alwaysfailerror") == set(ids["exhausted"])  # the error's type
    assert await listed(type="always_fail", priority="high") == set()
    now = dt.datetime.now(dt.UTC)
    hour = dt.timedelta(hours=1)
    assert len(await listed(since=now - hour, until=now + hour)) == 7
    assert await listed(since=now + hour) == set()
    assert await listed(until=now - hour) == set()
    [letter] = (await ops.dlq_list(db, DlqFilter(reason="non_retryable"))).dead_letters
    assert (letter.type, letter.priority, letter.attempt, letter.attempts) == (
        "refuse",
        "low",
        1,
        1,
    )
    assert letter.error is not None and letter.error.message == "bad input"


async def test_dlq_list_pagination_walks_every_letter_once_newest_first(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    ids = await make_dead(config, db, streams, metrics)
    seen: list[tuple[dt.datetime, uuid.UUID]] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await ops.dlq_list(db, cursor=cursor, limit=2)
        pages += 1
        seen.extend((d.dead_at, d.task_id) for d in page.dead_letters)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 4
    assert sorted(i for _, i in seen) == sorted(i for group in ids.values() for i in group)
    assert seen == sorted(seen, reverse=True)


async def test_dlq_list_rejects_a_bad_cursor_and_limit(db: Database) -> None:
    with pytest.raises(ops.BadRequest) as err:
        await ops.dlq_list(db, cursor="not-a-cursor")
    assert err.value.field == "cursor"
    with pytest.raises(ops.BadRequest) as err:
        await ops.dlq_list(db, limit=0)
    assert err.value.field == "limit"


# dead letters: replay


async def test_replay_dry_run_changes_nothing(
    config: Config, db: Database, streams: Streams, metrics: Metrics, pg: asyncpg.Connection
) -> None:
    ids = await make_dead(config, db, streams, metrics)
    before = await snapshot(pg, streams)

    result = await ops.dlq_replay(
        db, streams, DlqSelection(filter=DlqFilter(priority="high")), dry_run=True
    )
    assert (result.action, result.dry_run, result.count, result.truncated) == (
        "replay",
        True,
        2,
        False,
    )
    assert {r.task_id for r in result.tasks} == set(ids["unknown"])
    everything = await ops.dlq_replay(db, streams, DlqSelection(all=True), dry_run=True)
    assert everything.count == 7
    assert await snapshot(pg, streams) == before


async def test_replay_gives_fresh_attempts_keeps_history_and_publishes_one_entry_each(
    config: Config, db: Database, streams: Streams, metrics: Metrics, pg: asyncpg.Connection
) -> None:
    runs: collections.Counter[uuid.UUID] = collections.Counter()
    numbers: list[int] = []

    async def once(payload: Any, ctx: Context) -> None:
        runs[ctx.task_id] += 1
        numbers.append(ctx.attempt_number)
        if runs[ctx.task_id] == 1:
            raise RuntimeError("first run fails")

    targets = await enqueue(
        db, streams, [new_task(config, "once", max_attempts=1) for _ in range(3)]
    )
    [other] = await enqueue(db, streams, [new_task(config, "always_fail", max_attempts=1)])
    await executor(config, db, streams, metrics, once=once).run_once()
    assert await pg.fetchval("SELECT count(*) FROM dead_letters") == 4
    entries_before = {p: len(await streams.entries(p)) for p in PRIORITIES}

    result = await ops.dlq_replay(
        db, streams, DlqSelection(filter=DlqFilter(type="once")), dry_run=False
    )
    assert (result.dry_run, result.count, result.missing) == (False, 3, [])
    assert {r.task_id for r in result.tasks} == set(targets)

    rows = await pg.fetch(
        "SELECT id, status, attempt, first_attempt, finished_at, started_at, queued_at,"
        " updated_at, consumer FROM tasks WHERE id = ANY($1)",
        targets,
    )
    for r in rows:
        assert (r["status"], r["attempt"], r["first_attempt"]) == ("queued", 2, 2)
        assert r["finished_at"] is None and r["started_at"] is None and r["consumer"] is None
        assert r["queued_at"] == r["updated_at"]
    letters = await pg.fetch("SELECT task_id FROM dead_letters")
    assert [r["task_id"] for r in letters] == [other]
    kept = await pg.fetch(
        "SELECT task_id, attempt, outcome FROM task_attempts WHERE task_id = ANY($1)", targets
    )
    assert sorted((r["task_id"], r["attempt"]) for r in kept) == sorted((t, 1) for t in targets)
    # Exactly one new entry per replayed task, carrying the new attempt.
    fresh = (await streams.entries("default"))[entries_before["default"] :]
    assert sorted((f["t"], f["a"]) for _, f in fresh) == sorted((str(t), "2") for t in targets)

    await executor(config, db, streams, metrics, once=once).run_once()
    assert numbers == [1, 1, 1, 1, 1, 1]  # each run was the first of its attempts budget
    for task_id in targets:
        history = await ops.task_history(db, streams, task_id)
        assert history is not None
        assert (history.task.status, history.first_attempt, history.attempts_used) == (
            "succeeded",
            2,
            1,
        )
        assert [(a.attempt, a.outcome) for a in history.attempts] == [(1, "failed")]
        assert history.latest is not None and history.latest.attempt == 2
        assert history.dead_letter is None

    again = await ops.dlq_replay(db, streams, DlqSelection(ids=targets), dry_run=False)
    assert (again.count, sorted(again.missing)) == (0, sorted(targets))


async def test_replay_everything_in_batches_takes_each_letter_once(
    config: Config,
    db: Database,
    streams: Streams,
    metrics: Metrics,
    pg: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ops, "BATCH", 2)
    ids = await make_dead(config, db, streams, metrics)
    every = [i for group in ids.values() for i in group]
    lengths = {p: len(await streams.entries(p)) for p in PRIORITIES}

    result = await ops.dlq_replay(db, streams, DlqSelection(all=True), dry_run=False)
    assert result.count == 7 and sorted(r.task_id for r in result.tasks) == sorted(every)
    assert await pg.fetchval("SELECT count(*) FROM dead_letters") == 0
    fresh = [
        (f["t"], f["a"]) for p in PRIORITIES for _, f in (await streams.entries(p))[lengths[p] :]
    ]
    assert sorted(fresh) == sorted((str(i), "2") for i in every)


async def test_replay_with_redis_down_changes_nothing(
    config: Config, db: Database, streams: Streams, metrics: Metrics, pg: asyncpg.Connection
) -> None:
    await make_dead(config, db, streams, metrics)
    before = await snapshot(pg, streams)
    unreachable = Streams.connect("redis://127.0.0.1:1/0", Keys(config.stores.namespace))
    try:
        with pytest.raises(StoreUnavailable):
            await ops.dlq_replay(db, unreachable, DlqSelection(all=True), dry_run=False)
    finally:
        await unreachable.close()
    assert await snapshot(pg, streams) == before


@pytest.mark.parametrize(
    ("selection", "field"),
    [
        (DlqSelection(), None),
        (DlqSelection(all=True, ids=[uuid.uuid4()]), "all"),
        (DlqSelection(ids=[]), "ids"),
        (DlqSelection(filter=DlqFilter()), "filter"),
        (DlqSelection(filter=DlqFilter(priority="urgent")), "priority"),  # type: ignore[arg-type]
    ],
)
async def test_replay_and_purge_reject_a_bad_selection(
    db: Database, streams: Streams, selection: DlqSelection, field: str | None
) -> None:
    for dry_run in (True, False):
        with pytest.raises(ops.BadRequest) as err:
            await ops.dlq_replay(db, streams, selection, dry_run=dry_run)
        assert err.value.field == field
        with pytest.raises(ops.BadRequest):
            await ops.dlq_purge(db, selection, dry_run=dry_run)


# dead letters: purge


async def test_purge_deletes_letters_and_keeps_the_dead_tasks_and_their_history(
    config: Config, db: Database, streams: Streams, metrics: Metrics, pg: asyncpg.Connection
) -> None:
    ids = await make_dead(config, db, streams, metrics)
    before = await snapshot(pg, streams)
    selection = DlqSelection(filter=DlqFilter(reason="attempts_exhausted"))

    dry = await ops.dlq_purge(db, selection, dry_run=True)
    assert (dry.action, dry.dry_run, dry.count) == ("purge", True, 4)
    assert await snapshot(pg, streams) == before

    done = await ops.dlq_purge(db, selection, dry_run=False)
    assert (done.dry_run, done.count) == (False, 4)
    assert {r.task_id for r in done.tasks} == set(ids["exhausted"])
    remaining = {r["task_id"] for r in await pg.fetch("SELECT task_id FROM dead_letters")}
    assert remaining == set(ids["unknown"] + ids["refused"])
    for task_id in ids["exhausted"]:
        history = await ops.task_history(db, streams, task_id)
        assert history is not None and history.task.status == "dead"
        assert len(history.attempts) == 1 and history.dead_letter is None
    # Out of the dead letters means out of replay's reach.
    replay = await ops.dlq_replay(db, streams, DlqSelection(ids=ids["exhausted"]), dry_run=False)
    assert replay.count == 0 and sorted(replay.missing) == sorted(ids["exhausted"])

    one = await ops.dlq_purge(db, DlqSelection(ids=ids["refused"]), dry_run=False)
    assert one.count == 1
    rest = await ops.dlq_purge(db, DlqSelection(all=True), dry_run=False)
    assert rest.count == 2
    assert await pg.fetchval("SELECT count(*) FROM dead_letters") == 0


# consumers


async def test_remove_dead_consumers_never_removes_one_with_pending_entries(
    config: Config, db: Database, streams: Streams
) -> None:
    await enqueue(db, streams, [new_task(config) for _ in range(2)])
    [busy_entry] = (await streams.read("busy", {"default": 1}))["default"]
    [done_entry] = (await streams.read("done", {"default": 1}))["default"]
    await streams.ack([("default", done_entry.entry_id)])
    await streams._r.xgroup_createconsumer(streams.keys.stream("default"), GROUP, "idle")

    names = {(c.name, c.pending) for c in (await ops.consumers(streams)).consumers}
    assert names == {("busy", 1), ("done", 0), ("idle", 0)}

    recent = await ops.remove_dead_consumers(streams, min_idle_ms=3_600_000)
    assert recent.removed == [] and recent.kept_busy == []

    result = await ops.remove_dead_consumers(streams, min_idle_ms=0)
    assert sorted(c.name for c in result.removed) == ["done", "idle"]
    assert [c.name for c in result.kept_busy] == ["busy"]
    left = (await ops.consumers(streams)).consumers
    assert [(c.name, c.pending) for c in left] == [("busy", 1)]
    [still] = (await ops.pending(db, streams)).entries
    assert (still.entry_id, still.consumer) == (busy_entry.entry_id, "busy")
