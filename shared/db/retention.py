"""What the janitor's retention deletes: finished tasks past their age, expired idempotency
keys and old dead entries, each in bounded batches (one short statement each)."""

from __future__ import annotations

import uuid

from taskstream.shared import sql
from taskstream.shared.db.base import Base

WALK = "retention"


class RetentionQueries(Base):
    """Retention: the walk over the tasks, the set-aside rechecks, keys, dead entries."""

    async def retention_cursor(self) -> uuid.UUID:
        """Where the walk stands (the nil id before the first pass)."""
        value = await self._pool.fetchval(sql.SELECT_CURSOR, WALK)
        return value if isinstance(value, uuid.UUID) else uuid.UUID(int=0)

    async def retention_walk(
        self, after: uuid.UUID, before: uuid.UUID, limit: int, ages_ms: tuple[int, int, int]
    ) -> tuple[int, int]:
        """One batch of the walk and its cursor move, in one transaction: how many tasks were
        read and how many deleted."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(sql.RETENTION_WALK, after, before, limit, *ages_ms)
            if row is None or row["last"] is None:
                return 0, 0
            await conn.execute(sql.SET_CURSOR, WALK, row["last"])
        return int(row["read"]), int(row["deleted"])

    async def retention_recheck(self, limit: int, ages_ms: tuple[int, int, int]) -> tuple[int, int]:
        """Look again at set-aside tasks that may be due: (looked at, deleted)."""
        row = await self._pool.fetchrow(sql.RETENTION_RECHECK, limit, *ages_ms)
        return (int(row["looked"]), int(row["deleted"])) if row is not None else (0, 0)

    async def expire_idempotency_keys(self, ttl_ms: int, limit: int) -> int:
        status = await self._pool.execute(sql.EXPIRE_IDEMPOTENCY_KEYS, ttl_ms, limit)
        return int(status.rsplit(" ", 1)[1])

    async def expire_dead_entries(self, age_ms: int, limit: int) -> int:
        status = await self._pool.execute(sql.EXPIRE_DEAD_ENTRIES, age_ms, limit)
        return int(status.rsplit(" ", 1)[1])

    async def compact_queue_counts(self) -> None:
        """Fold the counted changes behind the queue gauges into one row per series."""
        await self._pool.execute(sql.COMPACT_QUEUE_COUNTS)
