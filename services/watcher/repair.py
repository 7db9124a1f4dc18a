"""The repair: re-sends every task Postgres says is queued but whose entry Redis does not have.

No index finds queued tasks (the hot path writes none, migrations/0005), so the repair works
from three sources, cheapest first:

- **A lost Redis.** When the epoch key changed or vanished, a stream's group is missing, or
  the server's run id changed (a restart or a failover: a new primary may lack the last
  writes), one watcher (the one that takes ``{ns}:repaired:<epoch>:<run id>``) re-sends every
  queued task, walking the whole table in id order (rare, and a full walk is then the point).
- **The outbox.** Every statement that makes tasks queued writes an outbox row naming them;
  their publisher deletes it once Redis has the entries. A row older than
  ``OUTBOX_GRACE_MS`` belongs to a publisher that died between the commit and the XADD (or to
  a Redis that refused): its queued tasks are re-sent and the row deleted.
- **A slow sweep.** Each pass reads the next ``SWEEP_BATCH`` tasks in id order (wrapping at
  the end) and re-sends the queued ones whose group has delivered past the time they were
  published by more than ``REPAIR_AFTER_MS``: the backstop for entries lost in ways nothing
  above notices (deleted by hand, say).

Re-sent entries that turn out to be duplicates are dropped by fencing. Every time compared
here is on Postgres's clock: the tasks' ``updated_at`` are, "now" is read from Postgres, and
the group's delivery point (an entry id, Redis's clock) is moved onto it by the offset between
the two servers measured in the same pass.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from taskstream.services.watcher.release import Release
from taskstream.shared.config import WatcherConfig
from taskstream.shared.db import Database
from taskstream.shared.domain import PRIORITIES
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import DeliveryMark, Streams
from taskstream.shared.supervise import Done, RoleBase

log = logging.getLogger(__name__)
FAR_FUTURE = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)
START = uuid.UUID(int=0)


class Repaired(Done, kw_only=True):
    repaired: int = 0  # tasks re-sent in all
    from_outbox: int = 0
    swept: int = 0  # of them, found by the sweep
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
        self._run_id: str | None = None
        self._cursor = START
        self.started = False

    async def start(self) -> None:
        """Create the groups if needed and remember the Redis this watcher starts with."""
        await self._streams.ensure_groups()
        self._epoch = await self._streams.epoch()
        self._run_id = await self._streams.run_id()
        self.started = True

    async def run_once(self) -> Repaired:
        if not self.started:
            await self.start()
        epoch = await self._streams.epoch()
        run_id = await self._streams.run_id()
        lost = (
            epoch is None
            or (self._epoch is not None and epoch != self._epoch)
            or (self._run_id is not None and run_id != self._run_id)
        )
        marks = await self._streams.delivery_marks()
        if lost or not all(m.exists for m in marks.values()):
            await self._streams.ensure_groups()
            epoch = await self._streams.epoch()
            assert epoch is not None
            seen, self._epoch, self._run_id = (self._epoch, self._run_id), epoch, run_id
            if await self._streams.claim_repair(f"{epoch}:{run_id}"):
                log.warning(
                    "Redis lost its streams (epoch and run id %s → %s): re-sending every "
                    "queued task",
                    seen,
                    (epoch, run_id),
                    extra={"event": "watcher.redis_lost"},
                )
                n = await self._resend_all()
                self._count(n)
                return Repaired(repaired=n, redis_lost=True)
        self._epoch, self._run_id = epoch, run_id
        outbox = await self._db.drain_outbox(
            self.config.outbox_grace_ms, self.config.watch_batch, self._release.publish
        )
        swept = await self._sweep_step(marks)
        self._count(outbox + swept)
        return Repaired(repaired=outbox + swept, from_outbox=outbox, swept=swept)

    async def _resend_all(self) -> int:
        total, after = 0, START
        cutoffs = dict.fromkeys(PRIORITIES, FAR_FUTURE)
        while True:
            upto = await self._db.sweep_bound(after, self.config.watch_batch)
            rows = await self._db.republish_queued(after, upto, cutoffs, self._release.publish)
            total += len(rows)
            if upto is None:
                return total
            after = upto

    async def _sweep_step(self, marks: dict[str, DeliveryMark]) -> int:
        now = await self._db.now()
        offset = await self._streams.time_s() - now.timestamp()  # Redis's clock minus ours
        cutoffs = {p: self._cutoff(marks[p], now.timestamp(), offset) for p in PRIORITIES}
        wanted = {p: min(c, now) for p, c in cutoffs.items() if c is not None}
        upto = await self._db.sweep_bound(self._cursor, self.config.sweep_batch)
        rows = []
        if wanted:
            rows = await self._db.republish_queued(
                self._cursor, upto, wanted, self._release.publish
            )
        self._cursor = upto or START  # wrap at the end
        return len(rows)

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

    def _count(self, n: int) -> None:
        if n:
            self._metrics.repaired.add(n)
            log.warning(
                "re-published %d queued tasks whose entries were lost",
                n,
                extra={"event": "watcher.repaired"},
            )
