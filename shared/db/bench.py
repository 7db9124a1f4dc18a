"""What the load generator and the benchmark read and write."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from taskstream.shared import sql
from taskstream.shared.db.base import Base
from taskstream.shared.domain import TaskTiming


class BenchQueries(Base):
    """What the load generator and the benchmark read and write."""

    async def unfinished(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        """Of ``ids``, the tasks not yet succeeded, dead or cancelled, with their status."""
        rows = await self._pool.fetch(sql.SELECT_UNFINISHED, ids)
        return {r["id"]: r["status"] for r in rows}

    async def timings(self, ids: Sequence[uuid.UUID]) -> list[TaskTiming]:
        """The timeline of each of ``ids`` that exists (load generator reports)."""
        rows = await self._pool.fetch(sql.SELECT_TIMINGS, ids)
        return [TaskTiming(**dict(r)) for r in rows]

    async def server_version(self) -> str:
        return str(await self._pool.fetchval(sql.SERVER_VERSION))

    async def bench_insert(
        self, ids: Sequence[uuid.UUID], types: Sequence[str], priorities: Sequence[str]
    ) -> int:
        """Insert bare queued task rows in one statement (benchmark ceiling); rows inserted."""
        payloads = ["{}"] * len(ids)
        status = await self._pool.execute(sql.BENCH_INSERT, ids, types, priorities, payloads)
        return int(status.rsplit(" ", 1)[1])

    async def bench_update(self, ids: Sequence[uuid.UUID], attempts: Sequence[int]) -> int:
        """Mark task rows succeeded in one statement (benchmark ceiling); rows updated."""
        status = await self._pool.execute(sql.BENCH_UPDATE, ids, attempts)
        return int(status.rsplit(" ", 1)[1])
