"""Operator operations: queue figures, the pending view, task history, consumers, dead letters.

One typed function per operation, taking the ``Database`` and ``Streams`` it needs, used by
both the ``taskstream`` CLI and the ingest API's ops routes, so the two always agree (the
CLI's ``--json`` prints the route's body). Bad arguments raise ``BadRequest`` naming the
field; an unreachable store raises ``StoreUnavailable``.

Dead letters: a replay gives each task fresh attempts and keeps its history (see
``Database.replay_dead_letters``); the entries are added after the commit, and a crash in
between leaves queued tasks that the watcher's repair re-sends, never a lost task. A purge
deletes only the dead-letter records: the tasks stay ``dead``, with their attempts and last
error, and remain
visible through ``task_history`` (and ``GET /v1/tasks/{id}``); they can no longer be
replayed from the dead letters. Replays and purges of a filter or of everything work in
batches of ``BATCH`` (one transaction each) and only take letters that died before the call
began, so tasks that die again meanwhile are not replayed twice by one call.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence

import msgspec

from taskstream.shared.db import Database
from taskstream.shared.domain import PRIORITIES, TERMINAL, Ready
from taskstream.shared.errors import StoreUnavailable, TaskstreamError
from taskstream.shared.ops_models import (
    MAX_IDS,
    AttemptView,
    DeadLetterPage,
    DlqFilter,
    DlqRef,
    DlqResult,
    DlqSelection,
    PausedType,
    PendingList,
    PendingView,
    Queues,
    QueueStats,
    TaskHistory,
    TaskRecord,
    TaskSummary,
)
from taskstream.shared.streams import (
    ConsumerInfo,
    PendingEntry,
    Publish,
    Streams,
    entry_time_ms,
)

log = logging.getLogger(__name__)

BATCH = 500  # dead letters replayed or purged per transaction
PENDING_MAX = 1000
DLQ_PAGE_MAX = 500


class BadRequest(TaskstreamError):
    """An argument that makes no sense; ``field`` names it."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ConsumerList(msgspec.Struct, frozen=True, kw_only=True):
    consumers: list[ConsumerInfo]


class RemovedConsumers(msgspec.Struct, frozen=True, kw_only=True):
    """Consumers removed, and those idle long enough but kept because they still hold
    pending entries (the janitor must reclaim those first)."""

    removed: list[ConsumerInfo]
    kept_busy: list[ConsumerInfo]


async def queues(db: Database, streams: Streams) -> Queues:
    """Per priority: the stream and its group (Redis), the due and dead rows and whether it is
    paused (Postgres); and the paused task types."""
    stats = await streams.stream_stats()
    depths = await db.queue_depths()
    paused = await db.queue_pauses()
    by_priority = {p.name: p for p in paused if p.kind == "priority"}
    out: list[QueueStats] = []
    for s in stats:
        depth = depths.get(s.priority, {})
        pause = by_priority.get(s.priority)
        out.append(
            QueueStats(
                priority=s.priority,
                exists=s.exists,
                length=s.length,
                lag=s.lag,
                lag_source=s.lag_source,
                pending=s.pending,
                consumers=s.consumers,
                oldest_pending_age_ms=_age(s.now_ms, s.oldest_pending_id),
                oldest_pending_idle_ms=s.oldest_pending_idle_ms,
                oldest_undelivered_age_ms=_age(s.now_ms, s.first_undelivered_id),
                retries_waiting=depth.get("retry", 0),
                delayed_waiting=depth.get("delayed", 0),
                dead_letters=depth.get("dead", 0),
                paused=pause is not None,
                paused_note=pause.note if pause is not None else None,
            )
        )
    types = [
        PausedType(type=p.name, note=p.note, paused_at=p.paused_at, parked=p.parked)
        for p in paused
        if p.kind == "type" and p.paused_at is not None
    ]
    return Queues(queues=out, paused_types=types)


async def pending(
    db: Database,
    streams: Streams,
    *,
    priority: str | None = None,
    consumer: str | None = None,
    min_idle_ms: int = 0,
    limit: int = 50,
    tenant: str | None = None,
) -> PendingList:
    """The oldest ``limit`` pending entries (of one priority, or all), optionally of one
    consumer and idle at least ``min_idle_ms``, joined with their tasks (one query). With
    ``tenant``, only the entries of that tenant's tasks among them."""
    if priority is not None:
        _check_priority(priority)
    _check_range("min_idle_ms", min_idle_ms, 0, 365 * 24 * 3_600_000)
    _check_range("limit", limit, 1, PENDING_MAX)
    found: list[PendingEntry] = []
    for p in [priority] if priority is not None else PRIORITIES:
        found.extend(
            await streams.pending_entries(
                p, consumer=consumer or None, min_idle_ms=min_idle_ms, count=limit
            )
        )
    found.sort(key=lambda e: (entry_time_ms(e.entry_id), PRIORITIES.index(e.priority)))
    found = found[:limit]
    ids = {e.task_id for e in found if e.task_id is not None}
    tasks = await db.task_summaries(list(ids)) if ids else {}
    if tenant is not None:
        found = [e for e in found if _tenant_of(e, tasks) == tenant]
    return PendingList(entries=[_pending_view(e, tasks) for e in found])


def _tenant_of(entry: PendingEntry, tasks: dict[uuid.UUID, TaskSummary]) -> str | None:
    task = tasks.get(entry.task_id) if entry.task_id is not None else None
    return task.tenant if task is not None else None


async def task_history(
    db: Database, streams: Streams, task_id: uuid.UUID, tenant: str | None = None
) -> TaskHistory | None:
    """Everything known about one task; ``None`` if there is no such task (of ``tenant``,
    when given)."""
    record = await db.task_record(task_id, tenant)
    if record is None:
        return None
    task = record.task
    held: PendingView | None = None
    if record.entry_id is not None:
        entries = await streams.pending_entries(
            task.priority, start=record.entry_id, end=record.entry_id, count=1
        )
        if entries:
            age = dt.datetime.now(dt.UTC) - task.created_at
            summary = TaskSummary(
                id=task.id,
                type=task.type,
                status=task.status,
                attempt=task.attempt,
                first_attempt=record.first_attempt,
                created_at=task.created_at,
                age_ms=max(0, int(age.total_seconds() * 1000)),
            )
            held = _pending_view(entries[0], {task.id: summary})
    in_history = any(a.attempt == task.attempt for a in record.attempts)
    return TaskHistory(
        task=task,
        first_attempt=record.first_attempt,
        attempts_used=task.attempt - record.first_attempt + 1,
        attempts=record.attempts,
        latest=None if in_history else _latest(record),
        dead_letter=record.dead_letter,
        pending=held,
    )


async def consumers(streams: Streams) -> ConsumerList:
    """Every consumer of the executors' group, per priority stream."""
    return ConsumerList(consumers=await streams.consumers())


async def remove_dead_consumers(streams: Streams, min_idle_ms: int) -> RemovedConsumers:
    """Remove consumers idle at least ``min_idle_ms`` with nothing pending. One holding
    pending entries is never removed (the Lua script re-checks atomically): it is reported
    in ``kept_busy`` until the janitor has reclaimed its entries."""
    _check_range("min_idle_ms", min_idle_ms, 0, 365 * 24 * 3_600_000)
    removed: list[ConsumerInfo] = []
    busy: list[ConsumerInfo] = []
    for c in await streams.consumers():
        if c.idle_ms < min_idle_ms:
            continue
        if c.pending > 0:
            busy.append(c)
        elif await streams.remove_idle_consumer(c.priority, c.name, min_idle_ms):
            removed.append(c)
    if removed:
        log.info(
            "removed %d idle consumers",
            len(removed),
            extra={"event": "ops.consumers_removed", "consumers": [c.name for c in removed]},
        )
    return RemovedConsumers(removed=removed, kept_busy=busy)


async def remove_consumer(streams: Streams, priority: str, name: str) -> bool:
    """Remove one consumer from the group on ``priority``'s stream if it holds nothing pending
    (atomic: the Lua script re-checks); False when it is busy or absent. A consumer that is
    alive after all simply joins the group again on its next read."""
    _check_priority(priority)
    removed = await streams.remove_idle_consumer(priority, name, 0)
    if removed:
        log.info(
            "removed consumer %s from %s",
            name,
            priority,
            extra={"event": "ops.consumer_removed", "consumer": name, "priority": priority},
        )
    return removed


async def find_task(db: Database, lookup: str, tenant: str | None = None) -> uuid.UUID | None:
    """The task a lookup names (of ``tenant``, when given): a task id, else an idempotency
    key still held."""
    lookup = lookup.strip()
    if not lookup:
        raise BadRequest("give a task id or an idempotency key", "lookup")
    if "\x00" in lookup:
        raise BadRequest("lookup must not contain a NUL character", "lookup")
    try:
        task_id = uuid.UUID(lookup)
    except ValueError:
        task_id = None
    if task_id is not None and await db.get_task(task_id, tenant) is not None:
        return task_id
    return await db.task_of_idempotency_key(lookup, tenant)


async def dlq_list(
    db: Database,
    where: DlqFilter | None = None,
    *,
    cursor: str | None = None,
    limit: int = 50,
    tenant: str | None = None,
) -> DeadLetterPage:
    """A page of dead letters (of ``tenant`` only, when given), newest first; ``next_cursor``
    continues it (null at the end)."""
    _check_range("limit", limit, 1, DLQ_PAGE_MAX)
    where = where or DlqFilter()
    _check_filter(where)
    after = decode_cursor(cursor) if cursor else None
    letters = await db.list_dead_letters(where, after=after, limit=limit, tenant=tenant)
    last = letters[-1] if len(letters) == limit else None
    return DeadLetterPage(
        dead_letters=letters,
        next_cursor=encode_cursor(last.dead_at, last.task_id) if last else None,
    )


async def dlq_replay(
    db: Database,
    streams: Streams,
    selection: DlqSelection,
    *,
    dry_run: bool,
    tenant: str | None = None,
) -> DlqResult:
    """Replay the selected dead letters (or, with ``dry_run``, say which would be and change
    nothing): each task is queued with fresh attempts, its letter deleted, its history kept,
    and exactly one entry published per task."""
    ids, where = check_selection(selection)
    if dry_run:
        total, refs = await db.match_dead_letters(
            ids, where, replayable=True, limit=MAX_IDS, tenant=tenant
        )
        return _result("replay", True, total, refs, ids)

    async def publish(rows: list[Ready]) -> None:
        entries = [
            Publish(
                priority=r.priority, task_id=r.id, attempt=r.attempt, trace_context=r.trace_context
            )
            for r in rows
        ]
        try:
            await streams.publish(entries)
        except StoreUnavailable as exc:
            # Committed already: the tasks are queued and the watcher's repair sends them.
            log.warning(
                "replayed %d tasks, publishing deferred to the repair: %s",
                len(rows),
                exc,
                extra={"event": "ops.replay_unpublished"},
            )

    # Redis unreachable: refuse before changing anything, rather than leave it to the repair.
    await streams.ping()
    where = await _as_of(db, where)
    count, refs = await _in_batches(
        lambda: db.replay_dead_letters(ids, where, BATCH, publish, tenant)
    )
    if count:
        log.info("replayed %d dead letters", count, extra={"event": "ops.dlq_replayed"})
    return _result("replay", False, count, refs, ids)


async def dlq_purge(
    db: Database, selection: DlqSelection, *, dry_run: bool, tenant: str | None = None
) -> DlqResult:
    """Delete the selected dead-letter records (or, with ``dry_run``, say which would be).
    The tasks stay ``dead`` with their history; they just leave the dead letters."""
    ids, where = check_selection(selection)
    if dry_run:
        total, refs = await db.match_dead_letters(
            ids, where, replayable=False, limit=MAX_IDS, tenant=tenant
        )
        return _result("purge", True, total, refs, ids)
    where = await _as_of(db, where)
    count, refs = await _in_batches(lambda: db.purge_dead_letters(ids, where, BATCH, tenant))
    if count:
        log.info("purged %d dead letters", count, extra={"event": "ops.dlq_purged"})
    return _result("purge", False, count, refs, ids)


async def _in_batches(step: Callable[[], Awaitable[list[DlqRef]]]) -> tuple[int, list[DlqRef]]:
    """Run ``step`` (one transaction of up to ``BATCH``) until a short batch; how many in all,
    and the first ``MAX_IDS`` of them."""
    count, refs = 0, list[DlqRef]()
    while True:
        batch = await step()
        count += len(batch)
        refs.extend(batch[: MAX_IDS - len(refs)])
        if len(batch) < BATCH:
            return count, refs


def check_selection(selection: DlqSelection) -> tuple[list[uuid.UUID] | None, DlqFilter]:
    """The ids and filter of a selection naming exactly one of ids, a non-empty filter, or
    all; raises ``BadRequest`` otherwise."""
    given = [
        name
        for name, present in (
            ("ids", selection.ids is not None),
            ("filter", selection.filter is not None),
            ("all", selection.all),
        )
        if present
    ]
    if len(given) != 1:
        field = given[1] if len(given) > 1 else None
        raise BadRequest("give exactly one of ids, filter or all", field)
    if selection.ids is not None:
        if not selection.ids:
            raise BadRequest("ids must not be empty", "ids")
        if len(selection.ids) > MAX_IDS:
            raise BadRequest(f"at most {MAX_IDS} ids at once", "ids")
        return list(dict.fromkeys(selection.ids)), DlqFilter()
    if selection.filter is not None:
        if selection.filter.is_empty():
            raise BadRequest("the filter must name at least one field (or use all)", "filter")
        _check_filter(selection.filter)
        return None, selection.filter
    return None, DlqFilter()


def encode_cursor(at: dt.datetime, task_id: uuid.UUID) -> str:
    """A dead-letter page cursor: the last (time, id) seen, opaque to clients."""
    raw = f"{at.isoformat()}|{task_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        dead_at, task_id = raw.split("|")
        when = dt.datetime.fromisoformat(dead_at)
        if when.tzinfo is None:
            raise ValueError("naive time")
        return when, uuid.UUID(task_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("bad cursor", "cursor") from None


def _pending_view(entry: PendingEntry, tasks: dict[uuid.UUID, TaskSummary]) -> PendingView:
    task = tasks.get(entry.task_id) if entry.task_id is not None else None
    stale = (
        task is None or task.attempt != entry.attempt or task.status not in ("queued", "running")
    )
    return PendingView(
        priority=entry.priority,
        entry_id=entry.entry_id,
        consumer=entry.consumer,
        idle_ms=entry.idle_ms,
        deliveries=entry.deliveries,
        entry_age_ms=entry.age_ms,
        task_id=entry.task_id,
        attempt=entry.attempt,
        type=task.type if task else None,
        status=task.status if task else None,
        task_attempt=task.attempt if task else None,
        task_age_ms=task.age_ms if task else None,
        stale=stale,
    )


def _latest(record: TaskRecord) -> AttemptView:
    """The task's current attempt as its row records it. The row's start time and consumer
    belong to this attempt only once it has been claimed (running or finished)."""
    task = record.task
    started = task.status in ("running", "succeeded", "dead")
    return AttemptView(
        attempt=task.attempt,
        outcome=task.status,
        consumer=record.consumer if started else None,
        started_at=task.started_at if started else None,
        finished_at=task.finished_at if task.status in TERMINAL else None,
        error=task.last_error if task.status == "dead" else None,
    )


def _result(
    action: str,
    dry_run: bool,
    count: int,
    refs: list[DlqRef],
    ids: Sequence[uuid.UUID] | None,
) -> DlqResult:
    done = {r.task_id for r in refs}
    return DlqResult(
        action=action,
        dry_run=dry_run,
        count=count,
        tasks=refs,
        truncated=count > len(refs),
        missing=[i for i in ids if i not in done] if ids is not None else [],
    )


async def _as_of(db: Database, where: DlqFilter) -> DlqFilter:
    """``where`` limited to letters that died before now (the database's clock)."""
    now = await db.now()
    until = now if where.until is None else min(where.until, now)
    return msgspec.structs.replace(where, until=until)


def _age(now_ms: int, entry_id: str | None) -> int | None:
    return None if entry_id is None else max(0, now_ms - entry_time_ms(entry_id))


def _check_priority(priority: str) -> None:
    if priority not in PRIORITIES:
        raise BadRequest(f"priority must be one of {', '.join(PRIORITIES)}", "priority")


def _check_range(field: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise BadRequest(f"{field} must be an integer from {low} to {high}", field)


def _check_filter(where: DlqFilter) -> None:
    if where.priority is not None:
        _check_priority(where.priority)
    for name in ("since", "until"):
        value = getattr(where, name)
        if value is not None and value.tzinfo is None:
            raise BadRequest(f"{name} must carry a time zone", name)
