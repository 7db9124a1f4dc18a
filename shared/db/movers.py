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

    async def running_longer_than(self, ms: int, limit: int) -> list[tuple[TaskState, bool]]:
        """Running tasks claimed more than ``ms`` ago (Postgres's clock), each with whether
        its handler timeout plus ``ms`` has run out too."""
        rows = await self._pool.fetch(sql.RUNNING_BEFORE, ms, limit)
        out = []
        for r in rows:
            fields = dict(r)
            timed_out = bool(fields.pop("timed_out"))
            out.append((TaskState(**fields), timed_out))
        return out

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
        """Move due rows to queued, commit, then ``publish`` them.

        Publishing after the commit matters: an entry added before it could reach an
        executor whose claim still sees the task ``retrying`` and drops the entry. A crash
        (or a failed publish) after the commit leaves queued tasks without an entry, which
        the watcher's repair re-sends; nothing is lost either way.
        """
        rows = [Ready(**dict(r)) for r in await self._pool.fetch(sql.MOVE_DUE, limit)]
        if rows:
            await publish(rows)
        return rows

    async def republish_queued(
        self, priority: str, before: dt.datetime, limit: int, publish: Publisher
    ) -> list[Ready]:
        """Re-send queued tasks of ``priority`` last published before ``before`` (stamped, then
        published after the commit, like ``move_due``)."""
        rows = [
            Ready(**dict(r))
            for r in await self._pool.fetch(sql.REPUBLISH_QUEUED, priority, before, limit)
        ]
        if rows:
            await publish(rows)
        return rows
