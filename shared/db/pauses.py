"""Queue pauses: pause and resume a priority or a task type cluster-wide, the executors' poll,
parking the delivered tasks of a paused type, and releasing them once it is resumed."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import msgspec

from taskstream.shared import sql
from taskstream.shared import sql_schedules as q
from taskstream.shared.db.base import Base
from taskstream.shared.domain import Publisher, Ready


class Pause(msgspec.Struct, frozen=True, kw_only=True):
    """A paused queue: ``kind`` is ``priority`` or ``type``; ``parked`` counts the tasks of a
    paused type waiting for its resume."""

    kind: str
    name: str
    note: str | None = None
    paused_at: dt.datetime | None = None
    parked: int = 0


class PauseQueries(Base):
    """Queue pauses: pause, resume, list, the executors' poll, park and unpark."""

    async def pause_queue(self, kind: str, name: str, note: str | None) -> tuple[Pause, bool]:
        """Pause a queue (or change its note); the pause, and whether this call made it."""
        row = await self._pool.fetchrow(q.PAUSE_QUEUE, kind, name, note)
        pause = Pause(kind=row["kind"], name=row["name"], note=row["note"],
                      paused_at=row["paused_at"])  # fmt: skip
        return pause, bool(row["created"])

    async def resume_queue(self, kind: str, name: str) -> bool:
        """Resume a queue; False if it was not paused."""
        return await self._pool.fetchrow(q.RESUME_QUEUE, kind, name) is not None

    async def queue_pauses(self) -> list[Pause]:
        """Every paused queue (with the tasks parked under each paused type)."""
        return [Pause(**dict(r)) for r in await self._pool.fetch(q.LIST_PAUSES)]

    async def paused_names(self) -> tuple[frozenset[str], frozenset[str]]:
        """The paused priorities and the paused types (what executors poll)."""
        rows = await self._pool.fetch(q.PAUSED_NAMES)
        priorities = frozenset(r["name"] for r in rows if r["kind"] == "priority")
        return priorities, frozenset(r["name"] for r in rows if r["kind"] == "type")

    async def park_paused(
        self, ids: Sequence[uuid.UUID], attempts: Sequence[int], types: Sequence[str]
    ) -> dict[uuid.UUID, str]:
        """Of these deliveries, park the tasks of a paused type in ``types`` (re-checked
        against the pauses): queued, at the delivered attempt, nothing claimed. Returns the
        tasks parked, with their types; their entries are to be acknowledged."""
        rows = await self._pool.fetch(q.PARK_PAUSED, list(ids), list(attempts), list(types))
        return {r["task_id"]: r["type"] for r in rows}

    async def unpark(self, limit: int, publish: Publisher) -> list[Ready]:
        """Release up to ``limit`` parked tasks whose type was resumed: commit, then
        ``publish`` them, then delete their outbox row (a crash in between leaves them to
        the outbox's repair)."""
        rows = await self._pool.fetch(q.UNPARK, limit)
        ready = [
            Ready(
                id=r["id"],
                attempt=r["attempt"],
                priority=r["priority"],
                trace_context=r["trace_context"],
                outbox_id=r["outbox_id"],
            )
            for r in rows
        ]
        if ready:
            await publish(ready)
            if ready[0].outbox_id is not None:
                await self._pool.execute(sql.OUTBOX_DONE, [ready[0].outbox_id])
        return ready
