"""The unpark role: re-publishes the tasks parked while their type was paused, once it is
resumed.

An executor handed a task of a paused type parks it (``parked_tasks``: still queued, at the
same attempt, its entry acknowledged). Each pass releases a batch of parked tasks whose type
is no longer paused, rows another watcher holds skipped: deletes their rows, stamps the tasks
and writes an outbox row in one statement, commits, then publishes them. A cancelled parked
task is only forgotten. An empty table costs one index probe a pass.
"""

from __future__ import annotations

from taskstream.services.watcher.release import Release
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.metrics import Metrics
from taskstream.shared.supervise import Done, RoleBase


class Unparked(Done, kw_only=True):
    unparked: int = 0


class Unpark(RoleBase):
    name = "watcher.unpark"

    def __init__(self, config: Config, db: Database, release: Release, metrics: Metrics) -> None:
        self.interval_s = config.executor.pause_poll_ms / 1000
        self.config = config
        self._db = db
        self._release = release
        self._metrics = metrics

    async def run_once(self) -> Unparked:
        batch = self.config.watcher.watch_batch
        rows = await self._db.unpark(batch, self._release.publish)
        if rows:
            self._metrics.unparked.add(len(rows))
        return Unparked(unparked=len(rows), more=len(rows) >= batch)
