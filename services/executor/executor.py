"""The executor: reads the priority streams in one consumer group and runs handlers.

Data flow: a reader takes ``count = free slots`` entries, split among the priorities by
weight, and claims them in Postgres in one fenced statement (``queued → running`` for that
attempt); stale deliveries are acknowledged and dropped. Runners execute handlers under their
timeout; the completer records outcomes in batches and acknowledges entries after the commit.

Every entry read is held (``leases.py``) until its ack: the heartbeat thread extends all of
their leases, and a job whose lease turned out lost is never started.

Paused queues (``pauses.py``): a paused priority's stream is not read; a delivered task of a
paused type is parked, not claimed, and its entry acknowledged.

Shutdown order (SIGTERM): stop reading → release claimed tasks that never started (back to
queued, re-published) → let running handlers finish within ``SHUTDOWN_GRACE_MS`` → cancel the
rest, leaving their entries pending → record and ack what finished (a commit Postgres cannot
take within ``SHUTDOWN_GRACE_MS`` more is abandoned, unacked) → return. Every retry loop
(claims, bad entries, commits) looks at the stop, so an outage cannot hold the exit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import uuid

from taskstream.services.executor.caps import Caps
from taskstream.services.executor.completer import Completer, Finished
from taskstream.services.executor.heartbeat import Heartbeat
from taskstream.services.executor.leases import Key, Leases
from taskstream.services.executor.pauses import Pauses
from taskstream.services.executor.runner import HandlerRunner, Job, error_info
from taskstream.services.executor.threads import SyncPool
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.domain import PRIORITIES, ClaimedTask, Delivery, FairShare
from taskstream.shared.errors import StoreError, StoreUnavailable
from taskstream.shared.handlers import Registry
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import BadEntry, LeaseExtender, Publish, Streams

log = logging.getLogger(__name__)

WATCHDOG_S = 0.05  # how often handler deadlines are checked at the least
RETRY_PAUSE_S = 0.5  # between tries while a store is down


class Executor:
    """One executor process's consumer: ``run(stop)`` until stopped, or ``run_once()``."""

    def __init__(
        self,
        config: Config,
        db: Database,
        streams: Streams,
        registry: Registry,
        metrics: Metrics,
        *,
        consumer: str,
        rand: random.Random | None = None,
    ) -> None:
        self.config = config
        self.consumer = consumer
        self._db = db
        self._streams = streams
        self._registry = registry
        self._metrics = metrics
        self._rand = rand or random.Random()
        self._fair = FairShare(
            config.executor.weights(), strict=config.executor.priority_mode == "strict"
        )
        self._pool = config.executor.worker_pool
        self._prefetch = config.executor.prefetch
        self._prefetch_fast = max(config.executor.prefetch_fast, config.executor.prefetch)
        self._fast_s = config.executor.fast_handler_ms / 1000
        self._min_read = max(1, min(config.executor.worker_pool // 4, 64))
        self._inflight = 0  # read and not yet acknowledged
        self._changed = asyncio.Event()
        self._ready: asyncio.Queue[Job | None] = asyncio.Queue()
        # Running jobs by (priority, entry id): entry ids are unique per stream only.
        self._running: dict[Key, Job] = {}
        self.leases = Leases()  # every entry held, running or not; read by the heartbeat
        self._unstarted: list[Job] = []
        self._stopping = False
        self._completer = self._new_completer()
        self.threads = SyncPool()
        self._handlers = HandlerRunner(
            registry,
            db,
            metrics,
            max_deliveries=config.lease.max_deliveries,
            rand=self._rand,
            threads=self.threads,
            result_max_bytes=config.executor.result_max_bytes,
        )
        metrics.track_inflight(lambda: len(self._running))
        self.processed = 0
        self.pauses = Pauses(db, poll_s=config.executor.pause_poll_ms / 1000)
        self.caps = Caps(
            db,
            streams,
            metrics,
            poll_s=config.executor.limits_poll_ms / 1000,
            lease_ms=config.lease.vis_timeout_ms,
        )

    def _new_completer(self) -> Completer:
        return Completer(
            self._db,
            self._streams,
            self._metrics,
            batch_max=self.config.executor.complete_batch_max,
            linger_ms=self.config.executor.complete_linger_ms,
            on_done=self._done,
            on_acked=self._acked,
        )

    def _acked(self, keys: list[Key]) -> None:
        self.leases.release(keys)
        self.caps.forget(keys)

    async def run_once(self) -> int:
        """Burst mode: process what is on the streams now and return how many deliveries
        were handled (including stale ones dropped)."""
        return await self.run(asyncio.Event(), burst=True)

    async def run(self, stop: asyncio.Event, *, burst: bool = False) -> int:
        """Consume until ``stop`` is set (or, in burst mode, the streams are empty); returns
        the deliveries handled by this run."""
        self._completer = self._new_completer()
        self._stopping = False
        self.processed = 0
        if not await self._ensure_groups(stop):
            return 0
        heartbeat = Heartbeat(
            LeaseExtender(self._streams.url, self._streams.keys, timeout_s=self._streams.timeout_s),
            self.consumer,
            period=max(0.05, self.config.lease.vis_timeout_ms / 3000),
            leases=self.leases,
            slots=self.caps.snapshot,
            slot_lease_ms=self.config.lease.vis_timeout_ms,
        )
        heartbeat.start()
        try:
            return await self._run(stop, burst)
        finally:
            heartbeat.stop()

    async def _ensure_groups(self, stop: asyncio.Event) -> bool:
        """Create the groups, waiting while Redis is down; False if stopped meanwhile."""
        while True:
            try:
                await self._streams.ensure_groups()
                return True
            except StoreError as exc:
                log.warning("waiting for Redis: %s", exc, extra={"event": "executor.waiting"})
                if await _pause(stop, 1.0):
                    return False

    async def _run(self, stop: asyncio.Event, burst: bool) -> int:
        async with asyncio.TaskGroup() as tg:
            completer = tg.create_task(self._completer.run())
            runners = [
                tg.create_task(self._runner()) for _ in range(self.config.executor.worker_pool)
            ]
            stopping = tg.create_task(self._on_stop(stop))
            watchdog = tg.create_task(self._watchdog())
            await self.pauses.refresh()
            polling = tg.create_task(self.pauses.run())
            await self.caps.refresh()
            capping = tg.create_task(self.caps.run())
            await self._take_back_own_when_possible(stop)
            await self._read_loop(stop, burst)
            self._stopping = True
            await self._release_unstarted()
            for _ in runners:
                self._ready.put_nowait(None)
            grace = None if burst else self.config.executor.shutdown_grace_ms / 1000
            _, late = await asyncio.wait(runners, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                log.warning(
                    "cancelled %d handlers still running after the grace period; their "
                    "entries stay pending",
                    len(late),
                    extra={"event": "executor.grace_expired"},
                )
            # Runners that picked a job just as intake stopped handed it back unstarted.
            await self._release_unstarted()
            self._completer.close(None if burst else self.config.executor.shutdown_grace_ms / 1000)
            await completer
            stopping.cancel()
            watchdog.cancel()
            polling.cancel()
            capping.cancel()
        await self.caps.close()
        return self.processed

    async def _on_stop(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._stopping = True
        self._changed.set()  # wake the reader if it waits for free slots

    async def _read_loop(self, stop: asyncio.Event, burst: bool) -> None:
        # While the streams are (nearly) empty, go straight to the blocking read: it returns at
        # once when entries arrive, and skipping the weighted non-blocking read saves a round
        # trip per arrival. A blocking read that comes back full means a backlog again.
        quiet = False
        while not stop.is_set():
            free = self._capacity() - self._inflight
            if free < self._min_read and self._inflight > 0:
                await self._wait_change()
                continue
            try:
                batch = [] if quiet and not burst else await self._read(free)
                if not batch:
                    if burst:
                        if self._inflight == 0:
                            return
                        await self._wait_change()
                        continue
                    block = min(self.config.executor.read_block_ms, 1000)
                    per_stream = max(1, free // len(PRIORITIES))
                    readable = self.pauses.readable()
                    if readable == []:  # every priority paused: nothing to read
                        await _pause(stop, block / 1000)
                        continue
                    batch = await self._streams.wait(self.consumer, block, per_stream, readable)
                    most = collections.Counter(d.priority for d in batch).most_common(1)
                    quiet = not most or most[0][1] < per_stream
            except StoreError as exc:
                log.warning("cannot read: %s", exc, extra={"event": "executor.read_failed"})
                await _pause(stop, 1.0)
                continue
            if batch:
                await self._admit(batch)

    def _capacity(self) -> int:
        """Handler slots plus the read-ahead: the larger one while handlers are quick (a
        batch of noops costs the same round trips as a handful), the smaller one otherwise,
        so slow handlers never hoard entries another executor could start."""
        quick = self.processed > 0 and self._handlers.avg_run_s < self._fast_s
        return self._pool + (self._prefetch_fast if quick else self._prefetch)

    async def _read(self, free: int) -> list[Delivery | BadEntry]:
        got: list[Delivery | BadEntry] = []
        readable = self.pauses.readable()  # a paused priority's stream is not read
        among = list(PRIORITIES) if readable is None else readable
        if not among:
            return got
        for _ in PRIORITIES:
            counts = self._fair.split(free - len(got), among)
            replies = await self._streams.read(self.consumer, counts)
            for entries in replies.values():
                got.extend(entries)
            # A stream that returned fewer than it was asked for is empty for now; the slots
            # left go to the others, including those this split gave none (few free slots).
            empty = {p for p, n in counts.items() if n > 0 and len(replies.get(p, ())) < n}
            among = [p for p in among if p not in empty]
            if len(got) >= free or not among:
                break
        return got if self._fair.strict else _interleave(got)

    async def _admit(
        self,
        batch: list[Delivery | BadEntry],
        *,
        own: bool = False,
        poison: frozenset[tuple[str, str]] | set[tuple[str, str]] = frozenset(),
    ) -> None:
        """Claim delivered tasks and queue them for the runners; ack what cannot run."""
        deliveries = [d for d in batch if isinstance(d, Delivery)]
        self._inflight += len(batch)
        self.leases.hold((e.priority, e.entry_id) for e in batch)
        fair = collections.Counter(d.tenant for d in deliveries if d.tenant is not None)
        if fair and not own:  # entries counted toward their tenant's fair share were read
            try:
                await self._streams.fair_read(fair)
            except StoreError as exc:  # the count fades (a TTL) rather than stick
                log.warning("cannot count fair-share reads: %s", exc,
                            extra={"event": "executor.fair_read_failed"})  # fmt: skip
        bad = [b for b in batch if isinstance(b, BadEntry)]
        if bad:
            await self._keep_bad(bad)
        if deliveries and self.pauses.types:
            deliveries = await self._park(deliveries)
        if deliveries and self.caps.active:  # no cap: nothing more than this test
            capped = await self._cap(deliveries)
            if capped is None:  # stopping while a store is down: left pending, unclaimed
                self._let_go([(d.priority, d.entry_id) for d in deliveries])
                return
            deliveries = capped
        if not deliveries:
            return
        claimed = await self._claim(deliveries, own)
        if claimed is None:  # stopping while Postgres is down: leave them pending, unclaimed
            self._let_go([(d.priority, d.entry_id) for d in deliveries])
            return
        dequeued: collections.Counter[str] = collections.Counter()
        for d in deliveries:
            task = claimed.pop(d.task_id, None)
            if task is None or task.attempt != d.attempt:
                # Stale: the task was cancelled, finished, moved to a newer attempt, or this
                # is a duplicate entry (a crash between XADD and commit). Drop it.
                self._metrics.fenced.add(1, {"stage": "claim"})
                self._completer.submit(
                    Finished(priority=d.priority, entry_id=d.entry_id, outcome=None)
                )
                continue
            dequeued[d.priority] += 1
            if (d.priority, d.entry_id) in poison:
                outcome = self._handlers.poison(task)
                self._completer.submit(
                    Finished(
                        priority=d.priority,
                        entry_id=d.entry_id,
                        outcome=outcome,
                        type=task.type,
                        workflow=task.workflow_id is not None,
                    )
                )
                continue
            self._ready.put_nowait(Job(delivery=d, task=task))
        for priority, n in dequeued.items():
            self._metrics.dequeued.add(n, {"priority": priority})

    async def _park(self, deliveries: list[Delivery]) -> list[Delivery]:
        """Set aside the deliveries of a paused type (queued, nothing claimed, no attempt
        used) and acknowledge their entries; the others are returned to be claimed. If
        Postgres cannot say, all are returned: the claim waits for it anyway."""
        try:
            parked = await self._db.park_paused(
                [d.task_id for d in deliveries],
                [d.attempt for d in deliveries],
                sorted(self.pauses.types),
            )
        except StoreError as exc:
            log.warning("cannot park: %s", exc, extra={"event": "executor.park_failed"})
            return deliveries
        if not parked:
            return deliveries
        keep = []
        for d in deliveries:
            task_type = parked.get(d.task_id)
            if task_type is None:
                keep.append(d)
                continue
            self._metrics.parked.add(1, {"type": task_type})
            self._completer.submit(Finished(priority=d.priority, entry_id=d.entry_id, outcome=None))
        log.info(
            "parked %d tasks of paused types",
            len(deliveries) - len(keep),
            extra={"event": "executor.parked"},
        )
        return keep

    async def _cap(self, deliveries: list[Delivery]) -> list[Delivery] | None:
        """The deliveries whose caps gave them slots (or that have none); those whose cap is
        full are set aside to wait and their entries acknowledged. None if the executor
        stopped while a store could not answer (nothing taken)."""
        while True:
            try:
                go, waiting = await self.caps.admit(deliveries)
                break
            except StoreError as exc:
                if self._stopping:
                    return None
                log.warning("cannot take slots: %s", exc, extra={"event": "executor.cap_retry"})
                await asyncio.sleep(RETRY_PAUSE_S)
        for d in waiting:
            self._completer.submit(Finished(priority=d.priority, entry_id=d.entry_id, outcome=None))
        if waiting:
            log.info("%d tasks wait for a concurrency slot", len(waiting),
                     extra={"event": "executor.cap_waits"})  # fmt: skip
        return go

    async def _keep_bad(self, bad: list[BadEntry]) -> None:
        """Undecodable entries are kept in ``dead_entries`` and acknowledged, one by one."""
        for b in bad:
            self._metrics.bad_entries.add(1, {"priority": b.priority})
            log.error(
                "undecodable entry %s on %s: %s",
                b.entry_id,
                b.priority,
                b.fields,
                extra={"event": "executor.bad_entry"},
            )
        while True:
            try:
                await self._db.record_dead_entries(
                    [(b.priority, b.entry_id, b.fields) for b in bad], "undecodable"
                )
                break
            except StoreUnavailable as exc:
                if self._stopping:  # left pending: the janitor keeps them later
                    self._let_go([(b.priority, b.entry_id) for b in bad])
                    return
                log.warning("cannot keep bad entries: %s", exc, extra={"event": "executor.retry"})
                await asyncio.sleep(RETRY_PAUSE_S)
        for b in bad:
            self._completer.submit(Finished(priority=b.priority, entry_id=b.entry_id, outcome=None))

    async def _claim(
        self, deliveries: list[Delivery], own: bool
    ) -> dict[uuid.UUID, ClaimedTask] | None:
        """Claim the deliveries (fenced); None if the executor stopped while Postgres was
        down (nothing claimed)."""
        ids = [d.task_id for d in deliveries]
        attempts = [d.attempt for d in deliveries]
        entry_ids = [d.entry_id for d in deliveries]
        while True:
            try:
                rows = await self._db.claim(ids, attempts, entry_ids, self.consumer, own=own)
                return {t.id: t for t in rows}
            except StoreUnavailable as exc:
                # The entries are ours (pending) and nothing is claimed: wait for Postgres.
                if self._stopping:
                    return None
                log.warning("cannot claim: %s", exc, extra={"event": "executor.claim_retry"})
                await asyncio.sleep(RETRY_PAUSE_S)

    async def _runner(self) -> None:
        me = asyncio.current_task()
        loop = asyncio.get_running_loop()
        while True:
            job = await self._ready.get()
            if job is None:
                return
            if self._stopping:
                self._unstarted.append(job)
                continue
            key = (job.delivery.priority, job.delivery.entry_id)
            if self.leases.is_lost(key):
                # Reclaimed (or lost with Redis's data) while it waited: whoever has it now
                # settles the attempt; starting it here would run the task twice.
                log.warning(
                    "not starting task %s: its lease was lost",
                    job.task.id,
                    extra={"event": "executor.lease_lost"},
                )
                self._let_go([key])
                continue
            job.deadline = loop.time() + job.task.timeout_ms / 1000
            job.runner = me
            self._running[key] = job
            try:
                outcome = await self._handlers.run(job)
            except Exception as exc:  # a bug around the handler: the attempt fails, not us
                log.exception(
                    "running task %s failed", job.task.id, extra={"event": "executor.bug"}
                )
                outcome = self._handlers.failure(job.task, error_info(exc), "failed")
            finally:
                del self._running[key]
            self._completer.submit(
                Finished(
                    priority=job.delivery.priority,
                    entry_id=job.delivery.entry_id,
                    outcome=outcome,
                    type=job.task.type,
                    workflow=job.task.workflow_id is not None,
                )
            )

    async def _watchdog(self) -> None:
        """Cancel handlers past their deadline (the per-task timeout), checking at least
        every ``WATCHDOG_S``: no timer per task."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            wake = now + WATCHDOG_S
            for job in list(self._running.values()):
                if job.deadline <= now:
                    if not job.expired and job.runner is not None:
                        job.expired = True
                        job.runner.cancel()
                else:
                    wake = min(wake, job.deadline)
            await asyncio.sleep(max(0.001, wake - now))

    async def _release_unstarted(self) -> None:
        """Hand claimed tasks that never started back to the queue for another executor."""
        jobs, self._unstarted = self._unstarted, []
        while not self._ready.empty():
            job = self._ready.get_nowait()
            if job is not None:
                jobs.append(job)
        if not jobs:
            return
        try:
            released, outbox = await self._db.release(
                [j.task.id for j in jobs], [j.task.attempt for j in jobs], self.consumer
            )
            # Publish before acking the old entries: a crash in between leaves a duplicate
            # (dropped by fencing), never a task without an entry.
            await self._streams.publish(
                [
                    Publish(
                        priority=j.task.priority,
                        task_id=j.task.id,
                        attempt=j.task.attempt,
                        trace_context=j.delivery.trace_context,
                    )
                    for j in jobs
                    if j.task.id in released
                ]
            )
            if outbox is not None:
                await self._db.outbox_done([outbox])
        except StoreError as exc:
            # Left as they are: running and pending under this consumer, taken back by a
            # restart under the same name or reclaimed after the visibility timeout.
            log.warning(
                "could not release %d unstarted tasks: %s",
                len(jobs),
                exc,
                extra={"event": "executor.release_failed"},
            )
            self._let_go([(j.delivery.priority, j.delivery.entry_id) for j in jobs])
            return
        for j in jobs:
            self._completer.submit(
                Finished(priority=j.delivery.priority, entry_id=j.delivery.entry_id, outcome=None)
            )
        log.info("released %d unstarted tasks", len(jobs), extra={"event": "executor.released"})

    async def _take_back_own_when_possible(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._take_back_own()
                return
            except StoreError as exc:
                log.warning(
                    "cannot take back own entries yet: %s", exc, extra={"event": "executor.retry"}
                )
                await _pause(stop, 1.0)

    async def _take_back_own(self) -> None:
        """After a restart under the same name: run this consumer's pending entries again,
        except those delivered more than ``MAX_DELIVERIES`` times (a task that kills its
        worker every time), which go to the dead letters without running."""
        own = await self._streams.read_own(self.consumer, 100)
        if not own:
            return
        counts = await self._streams.delivery_counts(
            self.consumer, [d for d in own if isinstance(d, Delivery)]
        )
        limit = self.config.lease.max_deliveries
        poison = {
            (e.priority, e.entry_id) for e in own if counts.get((e.priority, e.entry_id), 0) > limit
        }
        await self._admit(own, own=True, poison=poison)

    def _let_go(self, keys: list[Key]) -> None:
        """Stop holding entries this executor leaves pending for someone else."""
        self.leases.release(keys)
        self.caps.forget(keys)
        self._done(len(keys))

    def _done(self, n: int) -> None:
        self._inflight -= n
        self.processed += n
        self._changed.set()

    async def _wait_change(self) -> None:
        self._changed.clear()
        await self._changed.wait()


def _interleave(batch: list[Delivery | BadEntry]) -> list[Delivery | BadEntry]:
    """A batch with each priority's entries spread evenly through it (by their rank within
    their priority), so a large read starts the priorities in their shares, not one priority's
    whole part first. Each priority keeps its own order."""
    counts = collections.Counter(e.priority for e in batch)
    if len(counts) < 2:
        return batch
    seen: collections.Counter[str] = collections.Counter()
    ranked = []
    for e in batch:
        ranked.append(((seen[e.priority] + 0.5) / counts[e.priority], e))
        seen[e.priority] += 1
    ranked.sort(key=lambda pair: pair[0])
    return [e for _, e in ranked]


async def _pause(stop: asyncio.Event, seconds: float) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()
