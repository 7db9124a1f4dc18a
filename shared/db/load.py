"""What the load generator reads: which tasks are finished, and their timelines."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from taskstream.shared import sql
from taskstream.shared.db.base import Base
from taskstream.shared.domain import TaskTiming


class LoadQueries(Base):
    """What the load generator reads: which tasks are finished, and their timelines."""

    async def unfinished(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        """Of ``ids``, the tasks not yet succeeded, dead or cancelled, with their status."""
        rows = await self._pool.fetch(sql.SELECT_UNFINISHED, ids)
        return {r["id"]: r["status"] for r in rows}

    async def timings(self, ids: Sequence[uuid.UUID]) -> list[TaskTiming]:
        """The timeline of each of ``ids`` that exists (load generator reports)."""
        rows = await self._pool.fetch(sql.SELECT_TIMINGS, ids)
        return [TaskTiming(**dict(r)) for r in rows]
