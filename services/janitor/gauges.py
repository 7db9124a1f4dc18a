"""Queue gauges: sampled here, in one place (the janitor), so summing them across executors can
never multiply them. The same figures as ``taskstream queues`` and ``GET /v1/queues``. The
Postgres figures (retries and delayed tasks waiting, dead letters) are sums of the changes
triggers record (``queue_counts``), compacted here: no query counts the tables. Paused queues
(``queue_paused``, 1 or 0 per priority and per type that was ever seen paused) and schedules
by state (``schedules``) and the tenants (``tenants``: how many, never which) are sampled here
too, and the workflows whose end no executor or cancel counted (ended by a task cancel or a dead
letter of the janitor's) are counted in ``workflows_finished_total``."""

from __future__ import annotations

from taskstream.shared import ops
from taskstream.shared.db import Database
from taskstream.shared.domain import PRIORITIES
from taskstream.shared.domain.schedule import STATES
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
        self._types_seen: set[str] = set()  # paused types reported, set to 0 once resumed

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
        paused = {q.priority for q in snapshot.queues if q.paused}
        for priority in PRIORITIES:
            m.queue_paused.set(int(priority in paused), {"kind": "priority", "queue": priority})
        types = {t.type for t in snapshot.paused_types}
        for task_type in sorted(types | self._types_seen):
            m.queue_paused.set(int(task_type in types), {"kind": "type", "queue": task_type})
        self._types_seen |= types
        states = await self._db.schedule_states()
        for state in STATES:
            m.schedules.set(states.get(state, 0), {"state": state})
        for outcome in await self._db.count_ended_workflows():
            m.workflows_finished.add(1, {"outcome": outcome})
        for which, n in (await self._db.tenant_counts()).items():
            m.tenants.set(n, {"which": which})
        return Sampled(queues=snapshot)
