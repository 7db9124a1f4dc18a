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

No index finds running tasks (the hot path writes none, migrations/0005), so the role sweeps
the tasks in id order, ``SWEEP_BATCH`` a pass, wrapping at the end; when Redis lost its data
(the epoch key or the server's run id changed) it sweeps the whole table at once. Times are
Postgres's (``now()`` in the query), never this process's.
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

START = uuid.UUID(int=0)


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
        sweep_batch: int = 5_000,
        rand: random.Random | None = None,
    ) -> None:
        self.interval_s = interval_s
        self.lease = lease
        self._db = db
        self._streams = streams
        self._metrics = metrics
        self._rand = rand or random.Random()
        self._batch = sweep_batch
        self._cursor = START
        self._incarnation: tuple[str | None, str] | None = None
        self._full = False  # sweeping the whole table now (Redis lost its data)
        # Candidate → when (this process's monotonic clock) its consumer was first seen dead.
        self._dead_since: dict[tuple[uuid.UUID, int], float] = {}

    async def run_once(self) -> Recovered:
        vis_ms = self.lease.vis_timeout_ms
        incarnation = (await self._streams.epoch(), await self._streams.run_id())
        if self._incarnation is not None and incarnation != self._incarnation:
            self._full, self._cursor = True, START  # Redis lost its data: look everywhere
        self._incarnation = incarnation
        after = self._cursor
        upto = await self._db.sweep_bound(after, self._batch)
        self._cursor = upto or START
        wrapped = upto is None
        more = self._full and not wrapped
        if wrapped:
            self._full = False
        candidates = await self._db.running_longer_than(vis_ms, self._batch, after, upto)
        if not candidates:
            return Recovered(more=more)
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
        orphans: list[TaskState] = []
        for t, timed_out in lost:
            key = (t.id, t.attempt)
            if timed_out:
                orphans.append(t)
            elif t.consumer in alive:
                self._dead_since.pop(key, None)
            else:
                since = self._dead_since.setdefault(key, now)
                if now - since >= vis_ms / 1000:
                    orphans.append(t)
        # Forget candidates long gone (settled elsewhere): the memory stays small.
        stale = now - 100 * vis_ms / 1000
        self._dead_since = {k: v for k, v in self._dead_since.items() if v > stale}
        if not orphans:
            return Recovered(waiting=len(lost), more=more)
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
        for t in orphans:
            self._dead_since.pop((t.id, t.attempt), None)
        return Recovered(orphans=len(recorded), waiting=len(lost) - len(orphans), more=more)
