"""The watcher: moves due retries and delayed tasks onto the streams, and repairs lost entries.

Moving: due rows of the current and overdue hourly buckets are taken with ``FOR UPDATE SKIP
LOCKED`` (several watchers share the table) and deleted, their tasks marked queued, the
transaction committed, and only then the entries added: an entry added before the commit
could reach an executor that still sees the task ``retrying`` and drops it. A crash between
the commit and the XADD leaves queued tasks without entries, which the repair below re-sends.
A task is never released early; it is late by at most ``WATCH_INTERVAL_MS`` plus one batch.

Repair: Postgres owns every task, so whatever Redis lost can be re-sent. When the epoch key
changed or a stream's group is missing (Redis restarted empty, failed over, was flushed), one
watcher re-publishes every queued task. Otherwise a queued task is presumed lost when the group
has already delivered past the time it was published (or delivered everything) by more than
``REPAIR_AFTER_MS``. Re-sent entries that turn out to be duplicates are dropped by fencing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable

import msgspec

from taskstream.shared import tracing
from taskstream.shared.config import PRIORITIES, Config
from taskstream.shared.db import Database, Ready
from taskstream.shared.faults import crash_point
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import STORES_DOWN, DeliveryMark, Publish, Streams, lost_data

log = logging.getLogger(__name__)
FAR_FUTURE = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)


class Report(msgspec.Struct, kw_only=True):
    moved: int = 0
    repaired: int = 0


class Watcher:
    """One watcher: ``run(stop)`` until stopped, or ``run_once()``."""

    def __init__(
        self,
        config: Config,
        db: Database,
        streams: Streams,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._db = db
        self._streams = streams
        self._metrics = metrics
        self._clock = clock
        self._epoch: str | None = None
        self._started = False

    async def start(self) -> None:
        """Create the groups if needed and remember the epoch this watcher starts in."""
        await self._streams.ensure_groups()
        self._epoch = await self._streams.epoch()
        self._started = True

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        next_repair = 0.0
        while not stop.is_set():
            try:
                moved = await self.move_due()
                if time.monotonic() >= next_repair:
                    await self.repair()
                    next_repair = time.monotonic() + self.config.repair_interval_ms / 1000
            except STORES_DOWN as exc:
                # Nothing moved or half-moved: the transaction rolled back. Try again later.
                log.warning("pass failed: %s", exc, extra={"event": "watcher.store_down"})
                moved = 0
            except Exception as exc:
                if not lost_data(exc):
                    raise
                # Redis lost a stream or the group mid-pass: the next repair sees the new
                # epoch and re-publishes what was queued.
                log.warning("pass met lost data: %s", exc, extra={"event": "watcher.store_down"})
                moved = 0
            if moved < self.config.watch_batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.config.watch_interval_ms / 1000)

    async def run_once(self) -> Report:
        """Move everything due now and run one repair pass."""
        if not self._started:
            await self.start()
        report = Report()
        while True:
            moved = await self.move_due()
            report.moved += moved
            if moved < self.config.watch_batch:
                break
        report.repaired = await self.repair()
        return report

    async def move_due(self) -> int:
        rows = await self._db.move_due(self.config.watch_batch, self._publish)
        for r in rows:
            self._metrics.moved.add(1, {"priority": r.priority})
            self._metrics.lateness_seconds.record(max(0.0, r.late_s))
        return len(rows)

    async def repair(self) -> int:
        """Re-publish queued tasks whose entries Redis lost; returns how many."""
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
                return await self._republish(dict.fromkeys(PRIORITIES, FAR_FUTURE))
        self._epoch = epoch
        cutoffs = {p: self._cutoff(marks[p]) for p in PRIORITIES}
        return await self._republish({p: c for p, c in cutoffs.items() if c is not None})

    def _cutoff(self, mark: DeliveryMark) -> dt.datetime | None:
        """Queued tasks published before this have had their chance to be delivered."""
        margin = self.config.repair_after_ms / 1000
        now = self._clock()
        if mark.all_delivered:
            point = now - margin
        elif mark.last_delivered_ms:
            point = min(now, mark.last_delivered_ms / 1000) - margin
        else:
            return None
        return dt.datetime.fromtimestamp(point, dt.UTC)

    async def _republish(self, cutoffs: dict[str, dt.datetime]) -> int:
        total = 0
        for priority, before in cutoffs.items():
            # A task re-sent now is stamped now, so it is not selected again in this pass.
            before = min(before, dt.datetime.fromtimestamp(self._clock(), dt.UTC))
            while True:
                rows = await self._db.republish_queued(
                    priority, before, self.config.watch_batch, self._publish
                )
                total += len(rows)
                if len(rows) < self.config.watch_batch:
                    break
        if total:
            self._metrics.repaired.add(total)
            log.warning(
                "re-published %d queued tasks whose entries were lost",
                total,
                extra={"event": "watcher.repaired"},
            )
        return total

    async def _publish(self, rows: list[Ready]) -> None:
        crash_point("watcher.after_commit")
        await self._streams.publish([self._entry(r) for r in rows])

    def _entry(self, row: Ready) -> Publish:
        """The entry for a task, its trace continued by a span of this move (when tracing
        exports; otherwise the task's own trace context goes on as it is)."""
        if not tracing.enabled():
            return Publish(
                priority=row.priority,
                task_id=row.id,
                attempt=row.attempt,
                trace_context=row.trace_context,
            )
        with tracing.tracer().start_as_current_span(
            "task.release",
            context=tracing.context_from(row.trace_context),
            attributes={"taskstream.task.id": str(row.id), "taskstream.task.attempt": row.attempt},
        ):
            trace_context = tracing.current_traceparent()
        return Publish(
            priority=row.priority, task_id=row.id, attempt=row.attempt, trace_context=trace_context
        )
