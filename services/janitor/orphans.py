"""Orphans: running tasks whose stream entry is pending nowhere (Redis lost it with its data,
or it was deleted) are reclaimed like an expired lease, as soon as that is safe:

- at once once their handler timeout plus the visibility timeout has passed (a live executor
  would have settled them by then), or
- once their executor has shown no liveness for a visibility timeout: every executor's
  heartbeat refreshes ``{ns}:alive:<consumer>`` (it expires after three heartbeats), and this
  role remembers since when a candidate's consumer has had no such key. A live executor
  re-creates its key within one heartbeat after Redis lost everything, so a live handler is
  never cut short; a dead one's tasks are back within about ``VIS_TIMEOUT_MS``, not after
  their handler timeout (five minutes by default).

Times are Postgres's (``now()`` in the query), never this process's.
"""

from __future__ import annotations

import logging
import random
import time
import uuid

from taskstream.services.janitor import poison
from taskstream.shared.config import LeaseConfig
from taskstream.shared.db import Database
from taskstream.shared.domain import PRIORITIES, TaskState
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from taskstream.shared.supervise import Done, RoleBase

log = logging.getLogger(__name__)

BATCH = 1000


class Recovered(Done, kw_only=True):
    orphans: int = 0
    waiting: int = 0  # candidates whose executor may still be alive


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
        rand: random.Random | None = None,
    ) -> None:
        self.interval_s = interval_s
        self.lease = lease
        self._db = db
        self._streams = streams
        self._metrics = metrics
        self._rand = rand or random.Random()
        # Candidate → when (this process's monotonic clock) its consumer was first seen dead.
        self._dead_since: dict[tuple[uuid.UUID, int], float] = {}

    async def run_once(self) -> Recovered:
        vis_ms = self.lease.vis_timeout_ms
        candidates = await self._db.running_longer_than(vis_ms, BATCH)
        if not candidates:
            self._dead_since.clear()
            return Recovered()
        pending = await self._streams.are_pending(
            [(t.priority, t.entry_id) for t, _ in candidates if t.entry_id]
        )
        lost = [
            (t, timed_out)
            for t, timed_out in candidates
            if not t.entry_id or not pending.get((t.priority, t.entry_id))
        ]
        alive = await self._streams.alive(sorted({t.consumer for t, _ in lost if t.consumer}))
        now = time.monotonic()
        seen: dict[tuple[uuid.UUID, int], float] = {}
        orphans: list[TaskState] = []
        for t, timed_out in lost:
            key = (t.id, t.attempt)
            if timed_out:
                orphans.append(t)
            elif t.consumer not in alive:
                since = seen[key] = self._dead_since.get(key, now)
                if now - since >= vis_ms / 1000:
                    orphans.append(t)
        self._dead_since = seen
        if not orphans:
            return Recovered(waiting=len(lost))
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
        return Recovered(
            orphans=len(recorded),
            waiting=len(lost) - len(orphans),
            more=len(candidates) >= BATCH,
        )
