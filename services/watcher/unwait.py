"""The unwait role: re-publishes tasks that waited for a concurrency slot, as many as their
cap has free.

An executor handed a task whose type's or tenant's cap is full sets it aside
(``limit_waits``: still queued, at the same attempt, its entry acknowledged). Each pass reads
which caps tasks wait on (one grouped query; an empty table costs an index probe), how many of
each cap's slots are held in Redis (leases that ran out, a dead executor's, dropped first), and
releases that many waiters of each, oldest first: their rows deleted and an outbox row written
in one statement, then published. A cap removed meanwhile releases all of its waiters. A
released task may find its cap full again when delivered (another task took the slot first):
it waits again, still using no attempt.
"""

from __future__ import annotations

from taskstream.services.watcher.release import Release
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from taskstream.shared.supervise import Done, RoleBase


class Unwaited(Done, kw_only=True):
    unwaited: int = 0


class Unwait(RoleBase):
    name = "watcher.unwait"

    def __init__(
        self, config: Config, db: Database, streams: Streams, release: Release, metrics: Metrics
    ) -> None:
        self.interval_s = config.watcher.unwait_interval_ms / 1000
        self.config = config
        self._db = db
        self._streams = streams
        self._release = release
        self._metrics = metrics

    async def run_once(self) -> Unwaited:
        waiting = await self._db.waiting_caps()
        if not waiting:
            return Unwaited()
        caps = {(c.kind, c.name): c.max_running for c in await self._db.concurrency_limits()}
        keys = self._streams.keys
        used = await self._streams.slots_used(
            [keys.slots(kind, name) for kind, name in waiting if (kind, name) in caps]
        )
        batch = self.config.watcher.watch_batch
        released, more = 0, False
        for (kind, name), n in waiting.items():
            limit = caps.get((kind, name))
            free = n if limit is None else limit - used.get(keys.slots(kind, name), 0)
            take = min(n, free, batch)
            if take <= 0:
                continue
            rows = await self._db.unwait(kind, name, take, self._release.publish)
            released += len(rows)
            more = more or (len(rows) == batch and n > batch)
        if released:
            self._metrics.unwaited.add(released)
        return Unwaited(unwaited=released, more=more)
