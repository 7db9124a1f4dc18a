"""Queue gauges: sampled here, in one place (the janitor), so summing them across executors can
never multiply them. The same figures as ``taskstream queues`` and ``GET /v1/queues``. The
Postgres figures (retries and delayed tasks waiting, dead letters) are sums of the changes
triggers record (``queue_counts``), compacted here: no query counts the tables."""

from __future__ import annotations

from taskstream.shared import ops
from taskstream.shared.db import Database
from taskstream.shared.metrics import Metrics
from taskstream.shared.ops_models import Queues
from taskstream.shared.streams import Streams
from taskstream.shared.supervise import Done, RoleBase


class Sampled(Done, kw_only=True):
    queues: Queues | None = None


class Gauges(RoleBase):
    name = "janitor.gauges"

    def __init__(
        self, db: Database, streams: Streams, metrics: Metrics, *, interval_s: float
    ) -> None:
        self.interval_s = interval_s
        self._db = db
        self._streams = streams
        self._metrics = metrics

    async def run_once(self) -> Sampled:
        await self._db.compact_queue_counts()
        snapshot = await ops.queues(self._db, self._streams)
        m = self._metrics
        for q in snapshot.queues:
            labels = {"priority": q.priority}
            m.queue_depth.set(q.lag if q.lag is not None else 0, labels)
            m.stream_length.set(q.length, labels)
            m.pending_entries.set(q.pending, labels)
            m.consumers.set(q.consumers, labels)
            m.oldest_pending_age.set((q.oldest_pending_age_ms or 0) / 1000, labels)
            m.oldest_pending_idle.set((q.oldest_pending_idle_ms or 0) / 1000, labels)
            m.oldest_undelivered_age.set((q.oldest_undelivered_age_ms or 0) / 1000, labels)
            m.retry_set_depth.set(q.retries_waiting, labels)
            m.delayed_depth.set(q.delayed_waiting, labels)
            m.dlq_depth.set(q.dead_letters, labels)
        return Sampled(queues=snapshot)
