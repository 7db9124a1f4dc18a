"""Retention: nothing is kept forever. Finished tasks go after an age per end state
(``KEEP_SUCCEEDED_MS``, ``KEEP_CANCELLED_MS``, ``KEEP_DEAD_MS``) with their attempts, due rows
and dead letter; idempotency keys expire after ``IDEMPOTENCY_TTL_MS`` (the key is then free
for a new task); undecodable entries after ``KEEP_DEAD_ENTRIES_MS`` (River's job cleaner and
Oban's pruner are the models).

Every statement is bounded (``RETENTION_BATCH`` rows) and commits on its own, so no lock is
held long. The tasks are walked in id order from a cursor kept in Postgres (ids are
time-ordered), reading only tasks created before the shortest age could have run out, so a
pass never re-reads history: it costs the same with a million old rows as with none. A task
the walk passes that cannot go yet (still waiting or running, or finished too recently) is set
aside in ``retention_later`` with the time to look again. Times are Postgres's.
"""

from __future__ import annotations

from taskstream.shared import ids
from taskstream.shared.config import RetentionConfig
from taskstream.shared.db import Database
from taskstream.shared.supervise import Done, RoleBase


class Retained(Done, kw_only=True):
    read: int = 0  # tasks the walk read
    deleted: int = 0  # tasks deleted (walk and rechecks)
    rechecked: int = 0  # set-aside tasks looked at again
    keys_expired: int = 0
    dead_entries_expired: int = 0


class Retention(RoleBase):
    name = "janitor.retention"

    def __init__(self, config: RetentionConfig, db: Database) -> None:
        self.interval_s = config.retention_interval_ms / 1000
        self.config = config
        self._db = db

    @property
    def ages_ms(self) -> tuple[int, int, int]:
        c = self.config
        return c.keep_succeeded_ms, c.keep_cancelled_ms, c.keep_dead_ms

    async def run_once(self) -> Retained:
        c, batch = self.config, self.config.retention_batch
        now_ms = int((await self._db.now()).timestamp() * 1000)
        before = ids.floor(now_ms - min(self.ages_ms))  # nothing younger can be due
        read, deleted = await self._db.retention_walk(
            await self._db.retention_cursor(), before, batch, self.ages_ms
        )
        rechecked, gone = await self._db.retention_recheck(batch, self.ages_ms)
        keys = await self._db.expire_idempotency_keys(c.idempotency_ttl_ms, batch)
        entries = await self._db.expire_dead_entries(c.keep_dead_entries_ms, batch)
        return Retained(
            read=read,
            deleted=deleted + gone,
            rechecked=rechecked,
            keys_expired=keys,
            dead_entries_expired=entries,
            more=batch in (read, rechecked, keys, entries),
        )
