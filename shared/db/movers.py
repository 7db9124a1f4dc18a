"""What the watcher and the janitor need: due rows, repairs, stalled and orphaned tasks."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import msgspec

from taskstream.shared import sql
from taskstream.shared.db.base import Base
from taskstream.shared.domain import Publisher, Ready, TaskState


class MoverQueries(Base):
    """What the watcher and the janitor need: due rows, repairs, stalled and orphaned tasks."""

    async def task_states(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, TaskState]:
        rows = await self._pool.fetch(sql.STALLED_TASKS, list(ids))
        return {r["id"]: TaskState(**dict(r)) for r in rows}

    async def running_longer_than(
        self, ms: int, limit: int, after: uuid.UUID, upto: uuid.UUID | None
    ) -> list[tuple[TaskState, bool]]:
        """Running tasks with ids in (``after``, ``upto``] claimed more than ``ms`` ago
        (Postgres's clock), each with whether its handler timeout plus ``ms`` has run out."""
        rows = await self._pool.fetch(sql.RUNNING_BEFORE, ms, limit, after, upto)
        out = []
        for r in rows:
            fields = dict(r)
            timed_out = bool(fields.pop("timed_out"))
            out.append((TaskState(**fields), timed_out))
        return out

    async def sweep_bound(self, after: uuid.UUID, n: int) -> uuid.UUID | None:
        """The id ``n`` rows after ``after``; None when fewer are left (a sweep's batch)."""
        value = await self._pool.fetchval(sql.SWEEP_BOUND, after, n)
        return value if isinstance(value, uuid.UUID) else None

    async def record_dead_entries(
        self, entries: Sequence[tuple[str, str, dict[str, str]]], reason: str
    ) -> None:
        """Keep undecodable stream entries: ``(priority, entry_id, fields)``."""
        if not entries:
            return
        await self._pool.execute(
            sql.INSERT_DEAD_ENTRIES,
            [e[0] for e in entries],
            [e[1] for e in entries],
            # Raw bytes from Redis: NUL (which jsonb refuses) is kept visible as U+FFFD.
            [msgspec.json.encode(e[2]).decode().replace("\\u0000", "\ufffd") for e in entries],
            [reason] * len(entries),
        )

    async def move_due(self, limit: int, publish: Publisher) -> list[Ready]:
        """Move due rows to queued, commit, then ``publish`` them, then delete their outbox
        row.

        Publishing after the commit matters: an entry added before it could reach an
        executor whose claim still sees the task ``retrying`` and drops the entry. A crash
        (or a failed publish) after the commit leaves queued tasks without an entry and
        their outbox row, from which the watcher's repair re-sends them; nothing is lost.
        """
        rows = [Ready(**dict(r)) for r in await self._pool.fetch(sql.MOVE_DUE, limit)]
        if rows:
            await publish(rows)
            await self._outbox_done(rows)
        return rows

    async def republish_queued(
        self,
        after: uuid.UUID,
        upto: uuid.UUID | None,
        cutoffs: dict[str, dt.datetime],
        publish: Publisher,
    ) -> list[Ready]:
        """Re-send queued tasks with ids in (``after``, ``upto``] last published before their
        priority's cutoff (stamped, then published after the commit)."""
        priorities = list(cutoffs)
        rows = [
            Ready(**dict(r))
            for r in await self._pool.fetch(
                sql.REPUBLISH_QUEUED, after, upto, priorities, [cutoffs[p] for p in priorities]
            )
        ]
        if rows:
            await publish(rows)
        return rows

    async def drain_outbox(self, older_ms: int, limit: int, publish: Publisher) -> int:
        """Re-send the queued tasks of outbox rows older than ``older_ms`` (their publisher
        died, or Redis refused), then delete the rows, in one transaction; returns how many
        tasks were re-sent. Rows another watcher holds are skipped."""
        _, sent = await self._drain(sql.OUTBOX_STRANDED, (older_ms, limit), publish)
        return sent

    async def drain_enqueued(self, limit: int, publish: Publisher) -> tuple[int, int]:
        """Publish the queued tasks of up to ``limit`` outbox rows that transactional enqueues
        committed, then delete the rows, in one transaction (a crash in between publishes
        them again: fencing drops the duplicate). Returns (rows, tasks published)."""
        return await self._drain(sql.OUTBOX_ENQUEUED, (limit,), publish)

    async def _drain(
        self, query: str, args: tuple[int, ...], publish: Publisher
    ) -> tuple[int, int]:
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(query, *args)
            if not rows:
                return 0, 0
            ready = [
                Ready(
                    id=r["id"],
                    attempt=r["attempt"],
                    priority=r["priority"],
                    trace_context=r["trace_context"],
                )
                for r in rows
                if r["id"] is not None
            ]
            if ready:
                await publish(ready)
            outbox = sorted({r["outbox_id"] for r in rows})
            await conn.execute(sql.OUTBOX_DONE, outbox)
        return len(outbox), len(ready)

    async def _outbox_done(self, rows: Sequence[Ready]) -> None:
        ids = sorted({r.outbox_id for r in rows if r.outbox_id is not None})
        if ids:
            await self._pool.execute(sql.OUTBOX_DONE, ids)
