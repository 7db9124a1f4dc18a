"""The repair: re-sends every task Postgres says is queued but whose entry Redis lost.

Postgres owns every task, so whatever Redis lost can be re-sent. When the epoch key changed or
a stream's group is missing (Redis restarted empty, failed over, was flushed), one watcher
(the one that takes ``{ns}:repaired:<epoch>``) re-publishes every queued task. Otherwise a
queued task is presumed lost when the group has already delivered past the time it was
published (or delivered everything) by more than ``REPAIR_AFTER_MS``. Re-sent entries that
turn out to be duplicates are dropped by fencing.

Every time compared here is on Postgres's clock: the tasks' ``updated_at`` are, "now" is read
from Postgres, and the group's delivery point (an entry id, Redis's clock) is moved onto it by
the offset between the two servers measured in the same pass. The watcher's own clock is
never used, so a watcher whose clock is off neither re-sends a live backlog nor waits.
"""

from __future__ import annotations

import datetime as dt
import logging

from taskstream.services.watcher.release import Release
from taskstream.shared.config import WatcherConfig
from taskstream.shared.db import Database
from taskstream.shared.domain import PRIORITIES
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import DeliveryMark, Streams
from taskstream.shared.supervise import Done, RoleBase

log = logging.getLogger(__name__)
FAR_FUTURE = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)


class Repaired(Done, kw_only=True):
    repaired: int = 0
    redis_lost: bool = False


class Repair(RoleBase):
    name = "watcher.repair"

    def __init__(
        self,
        config: WatcherConfig,
        db: Database,
        streams: Streams,
        release: Release,
        metrics: Metrics,
    ) -> None:
        self.interval_s = config.repair_interval_ms / 1000
        self.config = config
        self._db = db
        self._streams = streams
        self._release = release
        self._metrics = metrics
        self._epoch: str | None = None
        self.started = False

    async def start(self) -> None:
        """Create the groups if needed and remember the epoch this watcher starts in."""
        await self._streams.ensure_groups()
        self._epoch = await self._streams.epoch()
        self.started = True

    async def run_once(self) -> Repaired:
        """Re-publish queued tasks whose entries Redis lost."""
        if not self.started:
            await self.start()
        epoch = await self._streams.epoch()
        lost = epoch is None or (self._epoch is not None and epoch != self._epoch)
        marks = await self._streams.delivery_marks()
        if lost or not all(m.exists for m in marks.values()):
            await self._streams.ensure_groups()
            epoch = await self._streams.epoch()
            assert epoch is not None
            if await self._streams.claim_repair(epoch):
                log.warning(
                    "Redis lost its streams (epoch %s → %s): re-publishing every queued task",
                    self._epoch,
                    epoch,
                    extra={"event": "watcher.redis_lost"},
                )
                self._epoch = epoch
                now = await self._db.now()
                n = await self._republish(dict.fromkeys(PRIORITIES, FAR_FUTURE), now)
                return Repaired(repaired=n, redis_lost=True)
        self._epoch = epoch
        now = await self._db.now()
        offset = await self._streams.time_s() - now.timestamp()  # Redis's clock minus ours
        cutoffs = {p: self._cutoff(marks[p], now.timestamp(), offset) for p in PRIORITIES}
        n = await self._republish({p: c for p, c in cutoffs.items() if c is not None}, now)
        return Repaired(repaired=n)

    def _cutoff(self, mark: DeliveryMark, now: float, offset: float) -> dt.datetime | None:
        """Queued tasks published before this (Postgres's clock) have had their chance to be
        delivered."""
        margin = self.config.repair_after_ms / 1000
        if mark.all_delivered:
            point = now - margin
        elif mark.last_delivered_ms:
            point = min(now, mark.last_delivered_ms / 1000 - offset) - margin
        else:
            return None
        return dt.datetime.fromtimestamp(point, dt.UTC)

    async def _republish(self, cutoffs: dict[str, dt.datetime], now: dt.datetime) -> int:
        total = 0
        batch = self.config.watch_batch
        for priority, before in cutoffs.items():
            # A task re-sent now is stamped now, so it is not selected again in this pass.
            before = min(before, now)
            while True:
                rows = await self._db.republish_queued(
                    priority, before, batch, self._release.publish
                )
                total += len(rows)
                if len(rows) < batch:
                    break
        if total:
            self._metrics.repaired.add(total)
            log.warning(
                "re-published %d queued tasks whose entries were lost",
                total,
                extra={"event": "watcher.repaired"},
            )
        return total
