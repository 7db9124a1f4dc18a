"""The reclaim: entries idle longer than ``VIS_TIMEOUT_MS`` are taken over with XAUTOCLAIM
(following the cursor) and settled one by one.

Live handlers never get here because executors heartbeat their entries. A running attempt
whose lease expired is a failed attempt (fenced, so the old worker can no longer record
anything) and is retried, or dead-lettered as poison past ``MAX_DELIVERIES`` (``poison.py``);
an entry delivered but never claimed is re-sent; a stale or duplicate entry is dropped; an
undecodable one is kept in ``dead_entries``. Outcomes are committed before the entries are
acknowledged, so a crash in between leaves them pending, to be found stale on the next pass.
Two janitors at once do no double work: XAUTOCLAIM hands an entry to one of them, and every
state change is fenced.
"""

from __future__ import annotations

import random

from taskstream.services.janitor import poison
from taskstream.shared.config import JanitorConfig, LeaseConfig
from taskstream.shared.db import Database
from taskstream.shared.domain import PRIORITIES, Delivery, Outcome
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import BadEntry, Publish, Streams
from taskstream.shared.supervise import Done, RoleBase


class Reclaimed(Done, kw_only=True):
    reclaimed: int = 0  # expired leases turned into failed attempts
    poisoned: int = 0  # dead-lettered for too many deliveries
    redelivered: int = 0  # delivered, never claimed: sent again
    dropped: int = 0  # stale, duplicate or deleted entries acknowledged
    bad: int = 0  # undecodable entries kept in dead_entries


class Reclaim(RoleBase):
    name = "janitor.reclaim"

    def __init__(
        self,
        config: JanitorConfig,
        lease: LeaseConfig,
        db: Database,
        streams: Streams,
        metrics: Metrics,
        *,
        consumer: str,
        rand: random.Random | None = None,
    ) -> None:
        self.interval_s = config.janitor_interval_ms / 1000
        self.config = config
        self.lease = lease
        self.consumer = consumer  # the consumer name stalled entries are claimed to
        self._db = db
        self._streams = streams
        self._metrics = metrics
        self._rand = rand or random.Random()

    async def start(self) -> None:
        await self._streams.ensure_groups()

    async def run_once(self) -> Reclaimed:
        """Sweep every stream's pending list once."""
        done = Reclaimed()
        for priority in PRIORITIES:
            await self.sweep(priority, done)
        return done

    async def sweep(self, priority: str, done: Reclaimed) -> None:
        """Sweep one stream's pending list once, following the XAUTOCLAIM cursor."""
        cursor = "0-0"
        while True:
            step = await self._streams.reclaim(
                priority,
                self.consumer,
                self.lease.vis_timeout_ms,
                cursor,
                self.config.reclaim_batch,
            )
            done.dropped += len(step.deleted)
            if step.entries:
                await self._settle(priority, step.entries, step.deliveries, done)
            cursor = step.cursor
            if cursor == "0-0":
                return

    async def _settle(
        self,
        priority: str,
        entries: list[Delivery | BadEntry],
        deliveries: dict[str, int],
        done: Reclaimed,
    ) -> None:
        bad = [e for e in entries if isinstance(e, BadEntry)]
        good = [e for e in entries if isinstance(e, Delivery)]
        if bad:
            await self._db.record_dead_entries(
                [(e.priority, e.entry_id, e.fields) for e in bad], "undecodable"
            )
            self._metrics.bad_entries.add(len(bad), {"priority": priority})
            done.bad += len(bad)
        states = await self._db.task_states([d.task_id for d in good])
        outcomes: list[Outcome] = []
        resend: list[Publish] = []
        for d in good:
            task = states.get(d.task_id)
            times = deliveries.get(d.entry_id, 1)
            if task is None or task.attempt != d.attempt:
                done.dropped += 1  # the task moved on: a stale entry
            elif task.status == "running" and task.entry_id == d.entry_id:
                outcomes.append(poison.expired(task, times, self.lease, self._rand))
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
                done.redelivered += 1
            else:
                done.dropped += 1  # finished, cancelled, or a duplicate of a live delivery
        # Commit outcomes and re-send before acknowledging: a crash in between leaves the
        # entries pending, to be reclaimed again and found stale.
        if outcomes:
            recorded = await self._db.complete(outcomes)
            poison.count(self._metrics, outcomes, recorded, priority)
            # Counted by what was recorded: another janitor may have settled the same attempt
            # between our read and our fenced update (then ours is a stale entry, dropped).
            for o in outcomes:
                if o.task_id not in recorded:
                    done.dropped += 1
                elif o.reason == "poison":
                    done.poisoned += 1
                else:
                    done.reclaimed += 1
        if resend:
            await self._streams.publish(resend)
        await self._streams.ack((e.priority, e.entry_id) for e in entries)
