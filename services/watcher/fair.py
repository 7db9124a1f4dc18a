"""The fair role: publishes the tasks held back for their tenant's fair share of the streams.

With ``FAIR_SHARE_ENTRIES`` set, ingest adds a tenant's entries only while it has fewer than
its share (``FAIR_SHARE_ENTRIES`` times its weight) waiting unread on the streams, and holds the
rest back in Postgres (``fair_held``: still queued, no entry). Each pass reads the tenants
with tasks held back (one index probe per tenant), how many of each one's entries are still
unread (one Redis call), and releases as many as fit in its share, oldest first, through the
same counted publish; any the share no longer takes (another publisher filled it meanwhile)
are held back again. So Redis holds, per tenant, only about its share: a new task of a quiet
tenant waits behind the busy tenants' shares, not behind their whole backlog, and the
executors' reads interleave the tenants in proportion to their weights (in a FIFO stream each
tenant's throughput is its share of what waits there).
"""

from __future__ import annotations

from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Publish, Streams
from taskstream.shared.supervise import Done, RoleBase


class Released(Done, kw_only=True):
    released: int = 0


class FairRelease(RoleBase):
    name = "watcher.fair"

    def __init__(self, config: Config, db: Database, streams: Streams, metrics: Metrics) -> None:
        self.interval_s = config.watcher.unwait_interval_ms / 1000
        self.config = config
        self._db = db
        self._streams = streams
        self._metrics = metrics
        self._weights: dict[str, int] = {}

    async def run_once(self) -> Released:
        share = self.config.access.fair_share_entries
        if share <= 0:
            return Released()
        tenants = await self._db.held_tenants()
        if not tenants:
            return Released()
        self._weights = {t.name: t.weight for t in await self._db.tenants()}
        unread = await self._streams.fair_counts(tenants)
        batch = self.config.watcher.watch_batch
        released, more = 0, False
        for tenant in tenants:
            cap = share * self._weights.get(tenant, 1)
            room = min(cap - unread.get(tenant, 0), batch)
            if room <= 0:
                continue
            rows = await self._db.release_fair(tenant, room)
            if not rows:
                continue
            entries = [
                Publish(priority=r.priority, task_id=r.id, attempt=r.attempt,
                        trace_context=r.trace_context, tenant=tenant)
                for r in rows
            ]  # fmt: skip
            held = await self._streams.publish_fair(entries, {tenant: cap})
            if held:
                await self._db.hold_fair(
                    [(e.task_id, e.attempt, e.priority, tenant, e.trace_context) for e in held]
                )
            outbox = [r.outbox_id for r in rows[:1] if r.outbox_id is not None]
            await self._db.outbox_done(outbox)
            released += len(rows) - len(held)
            more = more or len(rows) == batch
        if released:
            self._metrics.fair_released.add(released)
        return Released(released=released, more=more)
