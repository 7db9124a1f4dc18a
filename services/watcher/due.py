"""The due mover: puts due retries and delayed tasks on their streams, never early.

Due rows of the current and overdue hourly buckets are taken with ``FOR UPDATE SKIP LOCKED``
(several watchers share the table) and deleted, their tasks marked queued, the transaction
committed, and only then the entries added: an entry added before the commit could reach an
executor that still sees the task ``retrying`` and drops it. A crash between the commit and
the XADD leaves queued tasks without entries, which the repair re-sends. A task is late by at
most ``WATCH_INTERVAL_MS`` plus one batch.
"""

from __future__ import annotations

from taskstream.services.watcher.release import Release
from taskstream.shared.config import WatcherConfig
from taskstream.shared.db import Database
from taskstream.shared.metrics import Metrics
from taskstream.shared.supervise import Done, RoleBase


class Moved(Done, kw_only=True):
    moved: int = 0


class DueMover(RoleBase):
    name = "watcher.due"

    def __init__(
        self, config: WatcherConfig, db: Database, release: Release, metrics: Metrics
    ) -> None:
        self.interval_s = config.watch_interval_ms / 1000
        self.config = config
        self._db = db
        self._release = release
        self._metrics = metrics

    async def run_once(self) -> Moved:
        """Move one batch of due rows; ``more`` when the batch was full."""
        rows = await self._db.move_due(self.config.watch_batch, self._release.publish)
        for r in rows:
            self._metrics.moved.add(1, {"priority": r.priority})
            self._metrics.lateness_seconds.record(max(0.0, r.late_s))
        return Moved(moved=len(rows), more=len(rows) >= self.config.watch_batch)
