"""Orphans: running tasks whose stream entry is pending nowhere (Redis lost it with its data)
are reclaimed like an expired lease, once their handler timeout plus the visibility timeout
has passed (by then a live executor would have settled them, so no live handler is cut
short)."""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable

from taskstream.services.janitor import poison
from taskstream.shared.config import LeaseConfig
from taskstream.shared.db import Database
from taskstream.shared.domain import PRIORITIES
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from taskstream.shared.supervise import Done, RoleBase

log = logging.getLogger(__name__)

BATCH = 1000


class Recovered(Done, kw_only=True):
    orphans: int = 0


class Orphans(RoleBase):
    name = "janitor.orphans"

    def __init__(
        self,
        lease: LeaseConfig,
        db: Database,
        streams: Streams,
        metrics: Metrics,
        *,
        interval_s: float,
        clock: Callable[[], float] = time.time,
        rand: random.Random | None = None,
    ) -> None:
        self.interval_s = interval_s
        self.lease = lease
        self._db = db
        self._streams = streams
        self._metrics = metrics
        self._clock = clock
        self._rand = rand or random.Random()

    async def run_once(self) -> Recovered:
        before = dt.datetime.fromtimestamp(self._clock() - self.lease.vis_timeout_ms / 1000, dt.UTC)
        candidates = await self._db.running_before(before, BATCH)
        if not candidates:
            return Recovered()
        pending = await self._streams.are_pending(
            [(t.priority, t.entry_id) for t in candidates if t.entry_id]
        )
        orphans = [
            t for t in candidates if not t.entry_id or not pending.get((t.priority, t.entry_id))
        ]
        if not orphans:
            return Recovered()
        outcomes = [poison.expired(t, 1, self.lease, self._rand, orphan=True) for t in orphans]
        recorded = await self._db.complete(outcomes)
        for priority in PRIORITIES:
            mine = [o for o, t in zip(outcomes, orphans, strict=True) if t.priority == priority]
            poison.count(self._metrics, mine, recorded, priority)
        if recorded:
            log.warning(
                "recovered %d running tasks whose entries were lost",
                len(recorded),
                extra={"event": "janitor.orphans"},
            )
        return Recovered(orphans=len(recorded), more=len(candidates) >= BATCH)
