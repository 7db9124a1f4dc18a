"""Schedules: create or replace, read, pause, resume, delete, apply a whole set, trigger, and
the watcher's firing of due ticks.

Decisions are the domain's (``shared.domain.schedule``): these methods take them as small
functions, called inside the transaction that holds the schedule's row, so a decision and its
write can never be split by another writer.
"""

from __future__ import annotations

import collections
import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
import msgspec

from taskstream.shared import sql
from taskstream.shared import sql_schedules as q
from taskstream.shared.db.base import Base
from taskstream.shared.domain import NewTask, Publisher, Ready
from taskstream.shared.domain.schedule import Due, Firing, Spec, Stored, Write

# Decides a create or a change from the schedule as it is (None: none yet) and the
# transaction's now(): what to write, or None to leave it.
Decide = Callable[[Stored | None, dt.datetime], Write | None]
# Decides what a pass fires, from the locked schedules and the pass's now.
PlanPass = Callable[[list[Due], dt.datetime], list[Firing]]

APPLY_LOCK = 0x73636864  # "schd": any constant, as long as every apply uses it
KEEP_RUNS = 1000  # runs kept per schedule (older ticks can never fire again)


class Run(msgspec.Struct, frozen=True, kw_only=True):
    """One tick that made a task, with that task's status (None: deleted by retention)."""

    scheduled_for: dt.datetime
    outcome: str
    task_id: uuid.UUID
    created_at: dt.datetime
    status: str | None = None


class Fired(msgspec.Struct, frozen=True, kw_only=True):
    """What one pass of the watcher did, per schedule (counts of ticks by outcome, and how
    late each fired tick was released)."""

    outcomes: dict[str, collections.Counter[str]]
    lateness_s: list[float]
    published: int = 0
    cancelled: int = 0
    more: bool = False


def _stored(r: Any) -> Stored:
    return Stored(
        name=r["name"],
        spec=Spec(
            cron=r["cron"],
            every_ms=r["every_ms"],
            timezone=r["timezone"],
            overlap=r["overlap"],
            catchup_ms=r["catchup_ms"],
            jitter_ms=r["jitter_ms"],
            start_at=r["start_at"],
            end_at=r["end_at"],
        ),
        task=r["task"],
        paused=r["paused"],
        note=r["note"],
        paused_at=r["paused_at"],
        next_tick=r["next_tick"],
        next_release=r["next_release"],
        buffered_for=r["buffered_for"],
        enqueued=r["enqueued"],
        caught_up=r["caught_up"],
        skipped=r["skipped"],
        missed=r["missed"],
        triggered=r["triggered"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def _columns(name: str, w: Write) -> tuple[Any, ...]:
    """$1..$16 of INSERT_SCHEDULE and UPDATE_SCHEDULE."""
    s = w.spec
    return (
        name, s.cron, s.every_ms, s.timezone, w.task, s.overlap, s.catchup_ms, s.jitter_ms,
        s.start_at, s.end_at, w.paused, w.note, w.paused_at, w.next_tick, w.next_release,
        w.buffered_for,
    )  # fmt: skip


async def _change(
    conn: asyncpg.Connection,
    name: str,
    decide: Decide,
    *,
    create: bool,
    now: dt.datetime | None = None,
) -> tuple[str, Stored | None]:
    """One create-or-change on ``conn`` (inside a transaction): ``created``, ``updated``,
    ``unchanged`` or ``missing``, and the schedule after it. ``now``: the transaction's
    now() unless given (an injected clock)."""
    while True:
        row = await conn.fetchrow(q.LOCK_SCHEDULE, name)
        if row is not None:
            write = decide(_stored(row), now or row["now"])
            if write is None:
                return "unchanged", _stored(row)
            await conn.execute(q.UPDATE_SCHEDULE, *_columns(name, write))
            return "updated", _stored(await conn.fetchrow(q.SELECT_SCHEDULE, name))
        if not create:
            return "missing", None
        write = decide(None, now or await conn.fetchval(sql.DB_NOW))
        if write is None:
            return "missing", None
        if await conn.fetchval(q.INSERT_SCHEDULE, *_columns(name, write)) is not None:
            return "created", _stored(await conn.fetchrow(q.SELECT_SCHEDULE, name))
        # Created meanwhile by another writer (committed: ON CONFLICT waited for it): lock
        # that one and decide again.


class ScheduleQueries(Base):
    """Schedules: create or replace, read, pause, resume, delete, apply, trigger, fire."""

    async def change_schedule(
        self,
        name: str,
        decide: Decide,
        *,
        create: bool = False,
        now: dt.datetime | None = None,
    ) -> tuple[str, Stored | None]:
        """Create (if ``create``) or change one schedule as ``decide`` says, in one
        transaction holding its row: ``created``, ``updated``, ``unchanged`` or ``missing``
        (no such schedule), and the schedule after it. ``decide`` is given Postgres's now(),
        or ``now`` (an injected clock)."""
        async with self._pool.acquire() as conn, conn.transaction():
            return await _change(conn, name, decide, create=create, now=now)

    async def apply_schedules(
        self, decisions: Sequence[tuple[str, Decide]], *, prune: bool
    ) -> tuple[dict[str, str], list[str]]:
        """Make the schedules match a set: each created or changed as its decision says, and
        with ``prune`` every other one deleted, all in one transaction. Concurrent applies
        queue on an advisory lock, so the second sees the first's result (and changes
        nothing if the sets are the same). Returns each name's change and the names
        deleted."""
        changes: dict[str, str] = {}
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(q.APPLY_LOCK, APPLY_LOCK)
            for name, decide in sorted(decisions, key=lambda d: d[0]):
                changes[name] = (await _change(conn, name, decide, create=True))[0]
            deleted: list[str] = []
            if prune:
                rows = await conn.fetch(q.PRUNE_SCHEDULES, [n for n, _ in decisions])
                deleted = sorted(r["name"] for r in rows)
        return changes, deleted

    async def get_schedule(self, name: str) -> Stored | None:
        row = await self._pool.fetchrow(q.SELECT_SCHEDULE, name)
        return _stored(row) if row is not None else None

    async def list_schedules(self) -> list[Stored]:
        return [_stored(r) for r in await self._pool.fetch(q.LIST_SCHEDULES)]

    async def schedule_runs(self, name: str, limit: int) -> list[Run]:
        """The latest ``limit`` runs of a schedule, newest first."""
        return [Run(**dict(r)) for r in await self._pool.fetch(q.SELECT_RUNS, name, limit)]

    async def delete_schedule(self, name: str) -> bool:
        """Delete a schedule and its runs (the tasks it made stay); False if there was none."""
        return await self._pool.fetchval(q.DELETE_SCHEDULE, name) is not None

    async def schedule_states(self) -> dict[str, int]:
        """How many schedules are active, paused and ended."""
        return {r["state"]: int(r["n"]) for r in await self._pool.fetch(q.SCHEDULE_STATES)}

    async def trigger_schedule(
        self, name: str, build: Callable[[Stored], NewTask], publish: Publisher
    ) -> tuple[Stored, Run] | None:
        """Run a schedule now, whatever its overlap policy and pause: one task, its run
        scheduled for the transaction's now() (``triggered``), published after the commit.
        None if there is no such schedule."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(q.LOCK_SCHEDULE, name)
            if row is None:
                return None
            stored = _stored(row)
            task = build(stored)
            rows = await conn.fetch(q.FIRE_RUNS, *_fire_args([(name, None, "triggered", task)]))
            await conn.execute(q.COUNT_TRIGGERED, name)
            await conn.execute(q.PRUNE_RUNS, [name], KEEP_RUNS)
        ready = [_ready(r) for r in rows]
        await self._published(ready, publish)
        return stored, Run(
            scheduled_for=row["now"],
            outcome="triggered",
            task_id=task.id,
            created_at=row["now"],
            status="queued",
        )

    async def fire_schedules(
        self, now: dt.datetime | None, limit: int, decide: PlanPass, publish: Publisher
    ) -> Fired:
        """One pass of the watcher: lock up to ``limit`` schedules due at ``now`` (None:
        Postgres's clock), let ``decide`` plan them, then in the same transaction insert the
        runs and their tasks (a tick already made makes nothing: exactly one task per tick),
        cancel the previous runs the plans name, and move the schedules on. The tasks'
        entries are published after the commit (a crash in between leaves them to the
        outbox's repair)."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(q.LOCK_DUE_SCHEDULES, now, limit)
            if not rows:
                return Fired(outcomes={}, lateness_s=[])
            due = [
                Due(
                    schedule=_stored(r),
                    last_task=r["last_task"],
                    last_status=r["last_status"],
                    last_started=r["last_started_at"] is not None,
                )
                for r in rows
            ]
            firings = decide(due, rows[0]["now"])
            fires: list[tuple[str, dt.datetime | None, str, NewTask]] = []
            late: dict[uuid.UUID, float | None] = {}
            for f in firings:
                for fire, task in zip(f.plan.fires, f.tasks, strict=True):
                    fires.append((f.name, fire.scheduled_for, fire.outcome, task))
                    late[task.id] = fire.late_s
            inserted = await conn.fetch(q.FIRE_RUNS, *_fire_args(fires)) if fires else []
            made = {r["id"] for r in inserted}
            cancel = sorted(f.cancel for f in firings if f.cancel is not None)
            cancelled = 0
            if cancel:
                await conn.execute(q.LOCK_DUE_OF_TASKS, cancel)
                cancelled = len(await conn.fetch(q.CANCEL_UNSTARTED, cancel))
            outcomes: dict[str, collections.Counter[str]] = {}
            for f in firings:
                counts = outcomes[f.name] = collections.Counter()
                for fire, task in zip(f.plan.fires, f.tasks, strict=True):
                    if task.id in made:
                        counts[fire.outcome] += 1
                counts["skipped"] += f.plan.skipped
                counts["missed"] += f.plan.missed
            moved = [f for f in firings if _moves(f, outcomes[f.name], due)]
            if moved:
                await conn.execute(q.ADVANCE_SCHEDULES, *_advance_args(moved, outcomes))
            if made:
                await conn.execute(q.PRUNE_RUNS, sorted({f[0] for f in fires}), KEEP_RUNS)
        ready = [_ready(r) for r in inserted]
        await self._published(ready, publish)
        return Fired(
            outcomes={n: c for n, c in outcomes.items() if +c},
            lateness_s=[s for i, s in late.items() if i in made and s is not None],
            published=len(ready),
            cancelled=cancelled,
            # A full batch means more may be due, unless it changed nothing (schedules with a
            # buffered tick waiting on a busy run): then going again at once would only spin.
            more=any(f.plan.more for f in firings) or (len(rows) >= limit and bool(moved)),
        )

    async def _published(self, ready: list[Ready], publish: Publisher) -> None:
        # A publisher that returns False could not publish: the outbox row stays, and the
        # watcher's repair sends the tasks after OUTBOX_GRACE_MS.
        if ready and await publish(ready) is not False:
            outbox = ready[0].outbox_id
            if outbox is not None:
                await self._pool.execute(sql.OUTBOX_DONE, [outbox])


def _moves(f: Firing, counts: collections.Counter[str], due: list[Due]) -> bool:
    """Whether a pass changed anything of this schedule (a buffered tick waiting on a busy
    previous run changes nothing: no write)."""
    before = next(d.schedule for d in due if d.schedule.name == f.name)
    p = f.plan
    return bool(+counts) or (p.next_tick, p.buffered_for) != (
        before.next_tick,
        before.buffered_for,
    )


def _ready(r: Any) -> Ready:
    return Ready(
        id=r["id"], attempt=r["attempt"], priority=r["priority"],
        trace_context=r["trace_context"], outbox_id=r["outbox_id"],
    )  # fmt: skip


def _fire_args(fires: Sequence[tuple[str, dt.datetime | None, str, NewTask]]) -> list[list[Any]]:
    """$1..$12 of FIRE_RUNS: schedule, tick (None: now()), outcome, then the task."""
    cols: list[list[Any]] = [[] for _ in range(12)]
    for name, tick, outcome, t in fires:
        values = (
            name, tick, outcome, t.id, t.type, t.priority, t.payload.decode(), t.max_attempts,
            t.retry_base_ms, t.retry_max_ms, t.retry_jitter_ms, t.timeout_ms,
        )  # fmt: skip
        for col, value in zip(cols, values, strict=True):
            col.append(value)
    return cols


def _advance_args(
    firings: Sequence[Firing], outcomes: dict[str, collections.Counter[str]]
) -> list[list[Any]]:
    """$1..$8 of ADVANCE_SCHEDULES."""
    cols: list[list[Any]] = [[] for _ in range(8)]
    for f in firings:
        c = outcomes[f.name]
        values = (
            f.name, f.plan.next_tick, f.plan.next_release, f.plan.buffered_for,
            c["enqueued"], c["caught_up"], c["skipped"], c["missed"],
        )  # fmt: skip
        for col, value in zip(cols, values, strict=True):
            col.append(value)
    return cols
