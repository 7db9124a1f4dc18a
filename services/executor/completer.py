"""Records outcomes in batches, then acknowledges their entries: ack after commit, always.

Runners hand finished attempts here and move on. The completer gathers what arrives within
``COMPLETE_LINGER_MS`` (up to ``COMPLETE_BATCH_MAX``) into one transaction, and only after it
commits sends one pipelined XACK. An outcome whose attempt was fenced off (the entry was
reclaimed and the task moved on) is dropped and counted; its entry is still acknowledged.

While Postgres is down the commit is retried; once the executor is closing, only until
``close(give_up_after_s)`` runs out: then the batch is left unrecorded and unacknowledged (the
janitor reclaims its entries later), so a SIGTERM during an outage still exits in bounded time
and nothing is ever acked without its commit. An outcome Postgres refuses (``BadData``) costs
only itself: the batch is recorded one by one, and the refused outcome is recorded as a dead
attempt with a plain error instead (or, if even that is refused, left for the janitor).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import uuid
from collections.abc import Callable

import msgspec

from taskstream.shared.db import Database
from taskstream.shared.domain import Outcome
from taskstream.shared.errors import BadData, StoreError
from taskstream.shared.faults import crash_point
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams

log = logging.getLogger(__name__)

RETRY_PAUSE_S = 0.5
FINAL_ACK_TRIES = 5
# Outcome kinds this completer writes; "committed" (an exactly-once handler's success, already
# in Postgres) and "fenced" (its attempt was taken over) only need counting and acking.
RECORD = frozenset({"succeeded", "retry", "dead", "snooze"})


class Finished(msgspec.Struct, frozen=True, kw_only=True):
    """A delivery that is done with: its entry, and the outcome to record (None: ack only)."""

    priority: str
    entry_id: str
    outcome: Outcome | None
    type: str = ""


class Completer:
    """One writer of outcomes and acks for an executor."""

    def __init__(
        self,
        db: Database,
        streams: Streams,
        metrics: Metrics,
        *,
        batch_max: int,
        linger_ms: int,
        on_done: Callable[[int], None],
        on_acked: Callable[[list[tuple[str, str]]], None] = lambda keys: None,
    ) -> None:
        self._db = db
        self._streams = streams
        self._metrics = metrics
        self._batch_max = batch_max
        self._linger = linger_ms / 1000
        self._on_done = on_done
        self._on_acked = on_acked
        self._give_up_at: float | None = None
        self._queue: list[Finished] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._unacked: list[tuple[str, str]] = []

    def submit(self, item: Finished) -> None:
        self._queue.append(item)
        self._wake.set()

    def close(self, give_up_after_s: float | None = None) -> None:
        """Finish what was submitted, then make ``run`` return; with ``give_up_after_s``, a
        commit that cannot be made by then (Postgres down) is abandoned, unacked."""
        self._closing = True
        if give_up_after_s is not None:
            self._give_up_at = asyncio.get_running_loop().time() + give_up_after_s
        self._wake.set()

    async def run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    await self._retry_acks(final=True)
                    return
                self._wake.clear()
                if not self._unacked:
                    await self._wake.wait()
                    continue
                # Acks are owed (Redis was down): try again now and then meanwhile.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), RETRY_PAUSE_S)
                await self._retry_acks()
                continue
            if len(self._queue) < self._batch_max and self._linger > 0 and not self._closing:
                await asyncio.sleep(self._linger)
            batch, self._queue = self._queue[: self._batch_max], self._queue[self._batch_max :]
            # Shielded: once outcomes are being committed, the commit and the acks finish
            # even if the executor is being cancelled.
            await asyncio.shield(self._flush(batch))

    async def _flush(self, batch: list[Finished]) -> None:
        outcomes = [f.outcome for f in batch if f.outcome is not None and f.outcome.kind in RECORD]
        recorded = await self._record(outcomes) if outcomes else set()
        if recorded is None:  # abandoned at shutdown: nothing recorded, nothing acked
            self._on_done(len(batch))
            return
        self._count(batch, recorded)
        if outcomes:
            crash_point("executor.after_commit")
        # An ack that fails (Redis down) is owed and retried later, never holding back the
        # next commit: the entry stays pending meanwhile, which is always safe.
        self._unacked.extend((f.priority, f.entry_id) for f in batch)
        await self._retry_acks()
        self._on_done(len(batch))

    async def _record(self, outcomes: list[Outcome]) -> set[uuid.UUID] | None:
        """Commit ``outcomes``; the ids recorded, or None when abandoned at shutdown."""
        while True:
            try:
                return await self._db.complete(outcomes)
            except BadData as exc:
                log.error(
                    "Postgres refused a batch of %d outcomes, recording them one by one: %s",
                    len(outcomes),
                    exc,
                    extra={"event": "executor.complete_refused"},
                )
                return await self._record_each(outcomes)
            except StoreError as exc:
                loop = asyncio.get_running_loop()
                if self._give_up_at is not None and loop.time() >= self._give_up_at:
                    log.warning(
                        "giving up on %d outcomes at shutdown (Postgres: %s); their entries "
                        "stay pending for the janitor",
                        len(outcomes),
                        exc,
                        extra={"event": "executor.complete_abandoned"},
                    )
                    return None
                log.warning(
                    "cannot record %d outcomes, retrying: %s",
                    len(outcomes),
                    exc,
                    extra={"event": "executor.complete_retry"},
                )
                await asyncio.sleep(RETRY_PAUSE_S)

    async def _record_each(self, outcomes: list[Outcome]) -> set[uuid.UUID] | None:
        recorded: set[uuid.UUID] = set()
        for o in outcomes:
            for attempt in (o, _plain(o)):
                try:
                    recorded |= await self._db.complete([attempt])
                    break
                except BadData as exc:
                    log.error(
                        "Postgres refused the outcome of task %s: %s",
                        o.task_id,
                        exc,
                        extra={"event": "executor.outcome_refused"},
                    )
        return recorded

    async def _retry_acks(self, *, final: bool = False) -> None:
        """Acknowledge every owed entry; on failure keep them owed (at shutdown, try a few
        times, then leave them pending for the janitor, which finds them settled)."""
        for _ in range(FINAL_ACK_TRIES if final else 1):
            if not self._unacked:
                return
            entries, self._unacked = self._unacked, []
            try:
                await self._streams.ack(entries)
                self._metrics.acks.add(len(entries))
                self._on_acked(entries)
                return
            except StoreError as exc:
                self._unacked = entries + self._unacked
                log.warning(
                    "cannot ack %d entries, will retry: %s",
                    len(entries),
                    exc,
                    extra={"event": "executor.ack_retry"},
                )
                if final:
                    await asyncio.sleep(RETRY_PAUSE_S)

    def _count(self, batch: list[Finished], recorded: set[uuid.UUID]) -> None:
        """Count a batch's outcomes: one add per label set, not one per task."""
        counts: collections.Counter[tuple[str, str, str, str]] = collections.Counter()
        for f in batch:
            o = f.outcome
            if o is None:
                continue
            if o.kind == "committed" or (o.kind == "succeeded" and o.task_id in recorded):
                counts["succeeded", f.type, f.priority, ""] += 1
            elif o.kind == "fenced" or o.task_id not in recorded:
                counts["fenced", "", "", ""] += 1
                log.info(
                    "dropped the late result of task %s attempt %d",
                    o.task_id,
                    o.attempt,
                    extra={"event": "executor.fenced"},
                )
            else:
                counts[o.kind, f.type, f.priority, o.reason] += 1
        m = self._metrics
        for (kind, type_, priority, reason), n in counts.items():
            if kind == "fenced":
                m.fenced.add(n, {"stage": "complete"})
                continue
            labels = {"type": type_, "priority": priority}
            if kind == "succeeded":
                m.succeeded.add(n, labels)
                continue
            if kind == "snooze":
                m.snoozed.add(n, labels)
                continue
            m.failed.add(n, labels)
            if kind == "retry":
                m.retried.add(n, {"priority": priority})
            else:
                m.dead.add(n, {"priority": priority, "reason": reason})


def _plain(outcome: Outcome) -> Outcome:
    """A failed attempt with nothing Postgres could refuse: dead, with a plain error."""
    error = msgspec.json.encode(
        {"type": "OutcomeRefused", "message": "the store refused this attempt's outcome"}
    )
    return Outcome(
        task_id=outcome.task_id,
        attempt=outcome.attempt,
        kind="dead",
        outcome="failed",
        error=error,
        reason="outcome_refused",
    )
