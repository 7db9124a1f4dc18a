"""The janitor: reclaims stalled entries, quarantines poison, recovers orphans, trims streams
and prunes dead consumers.

Reclaim: XAUTOCLAIM (following the cursor) takes entries idle longer than ``VIS_TIMEOUT_MS``;
live handlers never get there because executors heartbeat their entries. Each stalled entry is
handled on its own: a running attempt whose lease expired is a failed attempt (fenced, so the
old worker can no longer record anything) and is retried or dead-lettered; an entry delivered
more than ``MAX_DELIVERIES`` times is poison and goes to the dead letters; an entry delivered
but never claimed is re-sent; a stale or duplicate entry is dropped; an undecodable one is kept
in ``dead_entries``. Outcomes are committed before the entries are acknowledged.

Orphans: a running task whose entry is no longer pending anywhere (Redis lost it) is treated
like an expired lease. Trimming removes only entries every group has acknowledged. Consumers
idle longer than ``CONSUMER_IDLE_MS`` with nothing pending are removed (atomically).

Two janitors at once do no double work: XAUTOCLAIM hands an entry to one of them, and every
state change is fenced.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
import uuid
from collections.abc import Callable

import msgspec

from taskstream.shared import ops
from taskstream.shared.backoff import failure
from taskstream.shared.config import PRIORITIES, Config
from taskstream.shared.db import Database, Outcome, TaskState
from taskstream.shared.metrics import Metrics
from taskstream.shared.models import Delivery, ErrorInfo
from taskstream.shared.ops_models import Queues
from taskstream.shared.streams import STORES_DOWN, BadEntry, Publish, Streams, lost_data

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode


class Report(msgspec.Struct, kw_only=True):
    reclaimed: int = 0  # expired leases turned into failed attempts
    poisoned: int = 0  # dead-lettered for too many deliveries
    redelivered: int = 0  # delivered, never claimed: sent again
    dropped: int = 0  # stale, duplicate or deleted entries acknowledged
    bad: int = 0  # undecodable entries kept in dead_entries
    orphans: int = 0  # running tasks whose entry Redis lost
    trimmed: int = 0
    consumers_removed: int = 0


class Janitor:
    """One janitor: ``run(stop)`` until stopped, or ``run_once()``."""

    def __init__(
        self,
        config: Config,
        db: Database,
        streams: Streams,
        metrics: Metrics,
        *,
        name: str,
        clock: Callable[[], float] = time.time,
        rand: random.Random | None = None,
    ) -> None:
        self.config = config
        self.name = name  # the consumer name stalled entries are claimed to
        self._db = db
        self._streams = streams
        self._metrics = metrics
        self._clock = clock
        self._rand = rand or random.Random()

    async def run(self, stop: asyncio.Event) -> None:
        await self._streams.ensure_groups()
        while not stop.is_set():
            try:
                await self.run_once()
            except STORES_DOWN as exc:
                # Outcomes commit before acks, so an interrupted pass is simply repeated.
                log.warning("pass failed: %s", exc, extra={"event": "janitor.store_down"})
            except Exception as exc:
                if not lost_data(exc):
                    raise
                # Redis lost a stream or the group in the middle of the pass: recreate them;
                # the next pass finds the running tasks whose entries vanished (orphans).
                log.warning("pass met lost data: %s", exc, extra={"event": "janitor.store_down"})
                with contextlib.suppress(*STORES_DOWN):
                    await self._streams.ensure_groups()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.janitor_interval_ms / 1000)

    async def run_once(self) -> Report:
        report = Report()
        for priority in PRIORITIES:
            await self.reclaim(priority, report)
        await self.recover_orphans(report)
        for priority in PRIORITIES:
            trimmed = await self._streams.trim_acknowledged(priority)
            if trimmed:
                self._metrics.trimmed.add(trimmed, {"priority": priority})
            report.trimmed += trimmed
        report.consumers_removed = await self.prune_consumers()
        await self.sample()
        return report

    async def sample(self) -> Queues:
        """Set the queue gauges: sampled here, in one place, so summing them across the
        executors can never multiply them."""
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
        return snapshot

    async def reclaim(self, priority: str, report: Report) -> None:
        """Sweep one stream's pending list once, following the XAUTOCLAIM cursor."""
        cursor = "0-0"
        while True:
            step = await self._streams.reclaim(
                priority,
                self.name,
                self.config.vis_timeout_ms,
                cursor,
                self.config.reclaim_batch,
            )
            report.dropped += len(step.deleted)
            if step.entries:
                await self._settle(priority, step.entries, step.deliveries, report)
            cursor = step.cursor
            if cursor == "0-0":
                return

    async def _settle(
        self,
        priority: str,
        entries: list[Delivery | BadEntry],
        deliveries: dict[str, int],
        report: Report,
    ) -> None:
        bad = [e for e in entries if isinstance(e, BadEntry)]
        good = [e for e in entries if isinstance(e, Delivery)]
        if bad:
            await self._db.record_dead_entries(
                [(e.priority, e.entry_id, e.fields) for e in bad], "undecodable"
            )
            self._metrics.bad_entries.add(len(bad), {"priority": priority})
            report.bad += len(bad)
        states = await self._db.task_states([d.task_id for d in good])
        outcomes: list[Outcome] = []
        resend: list[Publish] = []
        for d in good:
            task = states.get(d.task_id)
            times = deliveries.get(d.entry_id, 1)
            if task is None or task.attempt != d.attempt:
                report.dropped += 1  # the task moved on: a stale entry
            elif task.status == "running" and task.entry_id == d.entry_id:
                outcomes.append(self._expired(task, times))
            elif task.status == "queued":
                # Delivered but never claimed (the consumer died in between): send it again.
                resend.append(
                    Publish(
                        priority=task.priority,
                        task_id=task.id,
                        attempt=task.attempt,
                        trace_context=d.trace_context,
                    )
                )
                report.redelivered += 1
            else:
                report.dropped += 1  # finished, cancelled, or a duplicate of a live delivery
        # Commit outcomes and re-send before acknowledging: a crash in between leaves the
        # entries pending, to be reclaimed again and found stale.
        if outcomes:
            recorded = await self._db.complete(outcomes)
            self._count(outcomes, recorded, priority)
            # Counted by what was recorded: another janitor may have settled the same attempt
            # between our read and our fenced update (then ours is a stale entry, dropped).
            for o in outcomes:
                if o.task_id not in recorded:
                    report.dropped += 1
                elif o.reason == "poison":
                    report.poisoned += 1
                else:
                    report.reclaimed += 1
        if resend:
            await self._streams.publish(resend)
        await self._streams.ack((e.priority, e.entry_id) for e in entries)

    def _expired(self, task: TaskState, times: int, *, orphan: bool = False) -> Outcome:
        if orphan:
            error = ErrorInfo(
                type="EntryLost",
                message=f"the stream entry of this attempt (consumer {task.consumer}) was lost",
            )
        else:
            error = ErrorInfo(
                type="LeaseExpired",
                message=f"no heartbeat from consumer {task.consumer} for "
                f"{self.config.vis_timeout_ms} ms; delivery {times} reclaimed",
            )
        if times > self.config.max_deliveries:
            return failure(task, _encode(error), "reclaimed", retryable=False, reason="poison")
        return failure(task, _encode(error), "reclaimed", rand=self._rand)

    def _count(self, outcomes: list[Outcome], recorded: set[uuid.UUID], priority: str) -> None:
        m = self._metrics
        for o in outcomes:
            if o.task_id not in recorded:
                m.fenced.add(1, {"stage": "reclaim"})
                continue
            m.reaped.add(1, {"priority": priority})
            if o.kind == "retry":
                m.retried.add(1, {"priority": priority})
            else:
                m.dead.add(1, {"priority": priority, "reason": o.reason})

    async def recover_orphans(self, report: Report) -> None:
        """Running tasks whose entry is pending nowhere lost it with Redis: reclaim them, once
        their handler timeout plus the visibility timeout has passed (by then a live executor
        would have settled them, so no live handler is cut short)."""
        before = dt.datetime.fromtimestamp(
            self._clock() - self.config.vis_timeout_ms / 1000, dt.UTC
        )
        candidates = await self._db.running_before(before, 1000)
        if not candidates:
            return
        pending = await self._streams.are_pending(
            [(t.priority, t.entry_id) for t in candidates if t.entry_id]
        )
        orphans = [
            t for t in candidates if not t.entry_id or not pending.get((t.priority, t.entry_id))
        ]
        if not orphans:
            return
        outcomes = [self._expired(t, 1, orphan=True) for t in orphans]
        recorded = await self._db.complete(outcomes)
        for priority in PRIORITIES:
            mine = [o for o, t in zip(outcomes, orphans, strict=True) if t.priority == priority]
            self._count(mine, recorded, priority)
        report.orphans += len(recorded)
        if recorded:
            log.warning(
                "recovered %d running tasks whose entries were lost",
                len(recorded),
                extra={"event": "janitor.orphans"},
            )

    async def prune_consumers(self) -> int:
        removed = 0
        for c in await self._streams.consumers():
            idle = c.pending == 0 and c.idle_ms >= self.config.consumer_idle_ms
            if idle and await self._streams.remove_idle_consumer(
                c.priority, c.name, self.config.consumer_idle_ms
            ):
                removed += 1
                log.info(
                    "removed idle consumer %s from %s",
                    c.name,
                    c.priority,
                    extra={"event": "janitor.consumer_removed"},
                )
        return removed
