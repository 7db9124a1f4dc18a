"""Tasks from ingest to their outcome: insert, read, cancel, claim, release, complete."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec

from taskstream.shared import sql, sql_access
from taskstream.shared.db.base import (
    Base,
    Settlement,
    _text,
    _Transaction,
    task_view,
)
from taskstream.shared.db.boundary import is_driver_error, translate
from taskstream.shared.domain import ClaimedTask, InsertResult, NewTask, Outcome, Task
from taskstream.shared.domain.access import DEFAULT_TENANT
from taskstream.shared.errors import Fenced, QuotaExceeded


def _inserted_view(task: NewTask, row: Any) -> Task:
    """A just-inserted task's view from what the request had (the payload as the JSON it came
    in: no decode and re-encode per task) and the columns Postgres decided."""
    return Task(
        id=task.id,
        type=task.type,
        priority=task.priority,
        status=row["status"],
        attempt=1,
        max_attempts=task.max_attempts,
        payload=msgspec.Raw(task.payload),
        idempotency_key=task.idempotency_key,
        run_at=row["run_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        queued_at=row["queued_at"],
        started_at=None,
        finished_at=None,
        timeout_ms=task.timeout_ms,
        last_error=None,
        tenant=task.tenant,
    )


class _NowRow(dict[str, Any]):
    """What a plain insert's rows would have said: queued, every time the statement's now()."""

    def __init__(self, at: Any) -> None:
        super().__init__(status="queued", run_at=at, created_at=at, updated_at=at, queued_at=at)


Shared = tuple[int, int, int, int, int, str | None, str]


def _plain(tasks: Sequence[NewTask]) -> Shared | None:
    """The shared settings of a group ``INSERT_TASKS_PLAIN`` can take, or None."""
    first = tasks[0]
    shared = (
        first.max_attempts,
        first.retry_base_ms,
        first.retry_max_ms,
        first.retry_jitter_ms,
        first.timeout_ms,
        first.trace_context,
        first.tenant,
    )
    for t in tasks:
        if (
            t.idempotency_key is not None
            or t.run_at is not None
            or t.delay_ms
            or t.unique_hash is not None
            or (t.max_attempts, t.retry_base_ms, t.retry_max_ms, t.retry_jitter_ms,
                t.timeout_ms, t.trace_context, t.tenant) != shared
        ):  # fmt: skip
            return None
    return shared


def _insert_args(
    tasks: Sequence[NewTask], key_ttl_ms: int, counted: bool = False
) -> tuple[str, list[Any]]:
    """The statement inserting ``tasks`` (in this order) and its arguments."""
    cols: list[list[Any]] = [[] for _ in range(14)]
    for t in tasks:
        row = (
            t.id,
            t.type,
            t.priority,
            t.payload.decode(),
            t.max_attempts,
            t.retry_base_ms,
            t.retry_max_ms,
            t.retry_jitter_ms,
            t.timeout_ms,
            t.idempotency_key,
            t.request_hash,
            t.run_at,
            t.trace_context,
            t.delay_ms,
        )
        for col, value in zip(cols, row, strict=True):
            col.append(value)
    timed = any(t.run_at is not None or t.delay_ms for t in tasks)
    tenants = [t.tenant for t in tasks]
    if timed or any(t.unique_states is not None for t in tasks):
        states = [t.unique_states for t in tasks]
        return sql.INSERT_TASKS, [*cols, key_ttl_ms, states, tenants, counted]
    return sql.INSERT_TASKS_NOW, [*cols, key_ttl_ms, tenants, counted]


class TaskQueries(Base):
    """Tasks from ingest to their outcome: insert, read, cancel, claim, release, complete."""

    async def insert_tasks(
        self, tasks: Sequence[NewTask], *, key_ttl_ms: int = 24 * 3_600_000
    ) -> InsertResult:
        """Insert tasks in one statement (all or nothing); a taken idempotency key inserts
        nothing and returns the task that holds it (a key older than ``key_ttl_ms`` is free
        again)."""
        return await self._insert(self._pool, tasks, key_ttl_ms, counted=False)

    async def insert_tasks_counted(
        self,
        tasks: Sequence[NewTask],
        tenant: str,
        max_in_flight: int,
        *,
        key_ttl_ms: int = 24 * 3_600_000,
    ) -> InsertResult:
        """``insert_tasks`` for one tenant with an in-flight quota: in one transaction, the
        tenant's counter row is locked (so concurrent submitters take turns), the request is
        refused whole with ``QuotaExceeded`` if it would take the tenant past
        ``max_in_flight``, and the tasks inserted are added to the counter (the triggers of
        migration 0009 take them off as they end)."""
        async with self._pool.acquire() as conn, conn.transaction():
            in_flight = int(await conn.fetchval(sql_access.LOCK_USAGE, tenant))
            if in_flight + len(tasks) > max_in_flight:
                raise QuotaExceeded(tenant, in_flight, max_in_flight)
            result = await self._insert(conn, tasks, key_ttl_ms, counted=True)
            if result.inserted:
                await conn.execute(sql_access.ADD_USAGE, tenant, len(result.inserted))
        return result

    async def _insert(
        self, conn: Any, tasks: Sequence[NewTask], key_ttl_ms: int, *, counted: bool
    ) -> InsertResult:
        """Insert on ``conn`` (the pool, or a connection in a transaction)."""
        if not tasks:
            return InsertResult(inserted={}, existing={})
        plain = _plain(tasks)
        if plain is not None:
            return await self._insert_plain(conn, tasks, plain, counted)
        # Sorted by key so that concurrent batches take key locks in one order (no deadlock).
        ordered = sorted(tasks, key=lambda t: (t.tenant, t.idempotency_key or ""))
        lost: list[NewTask] = []
        if any(t.unique_hash is not None for t in tasks):
            rows, lost = await self._insert_claiming(conn, tasks, ordered, key_ttl_ms, counted)
        else:
            # One statement, so it commits on its own: no BEGIN and COMMIT round trips. A
            # taken key was committed before ON CONFLICT skipped it (it waits for an in-flight
            # holder), so the lookups below, in statements of their own, always find it.
            rows = await conn.fetch(*_flat(_insert_args(ordered, key_ttl_ms, counted)))
        by_request = {t.id: t for t in tasks}
        inserted = {r["id"]: _inserted_view(by_request[r["id"]], r) for r in rows}
        outbox = [rows[0]["outbox_id"]] if rows and rows[0]["outbox_id"] is not None else []
        lost_ids = {t.id for t in lost}
        taken = [t for t in ordered if t.idempotency_key is not None and t.id not in inserted]
        existing: dict[uuid.UUID, tuple[Task, bool]] = {}
        rejected: dict[uuid.UUID, str] = {}
        if taken:
            # Compared per requested task: one batch may repeat a key with other bodies.
            by_tenant: dict[str, list[str]] = {}
            for t in taken:
                by_tenant.setdefault(t.tenant, []).append(t.idempotency_key or "")
            keys = {
                (tenant, k["key"]): k
                for tenant, names in by_tenant.items()
                for k in await conn.fetch(sql.SELECT_IDEMPOTENCY_KEYS, tenant, names)
            }
            by_id = {
                r["id"]: task_view(r)
                for r in await conn.fetch(sql.SELECT_TASKS, [k["task_id"] for k in keys.values()])
            }
            for t in taken:
                k = keys.get((t.tenant, t.idempotency_key or ""))
                holder = by_id.get(k["task_id"]) if k is not None else None
                if k is None or holder is None:
                    if t.id in lost_ids:
                        continue  # a free key: the unique identity's holder answers it
                    # Expired and deleted between the insert and this read, or its task was
                    # deleted by retention: say so rather than guess.
                    rejected[t.id] = "this idempotency key's task no longer exists; retry"
                    continue
                existing[t.id] = (holder, bytes(k["request_hash"]) == t.request_hash)
        duplicates = await self._holders(conn, [t for t in lost if t.id not in existing], rejected)
        return InsertResult(
            inserted=inserted,
            existing=existing,
            rejected=rejected,
            outbox_ids=outbox,
            duplicates=duplicates,
        )

    async def _insert_claiming(
        self,
        on: Any,
        tasks: Sequence[NewTask],
        ordered: Sequence[NewTask],
        key_ttl_ms: int,
        counted: bool,
    ) -> tuple[list[Any], list[NewTask]]:
        """Insert a group with unique tasks: their identities first (``CLAIM_UNIQUE``), then
        the tasks that got theirs and the plain ones, then give back the identities of those
        whose idempotency key turned out taken; one transaction. Identities are always taken
        before keys, each in sorted order, so concurrent groups cannot deadlock. Returns the
        inserted rows and the unique tasks another task's identity kept out."""
        unique = [t for t in tasks if t.unique_hash is not None]  # request order: first wins
        in_transaction = on is not self._pool
        async with contextlib.AsyncExitStack() as stack:
            if in_transaction:  # the caller's transaction (a counted insert)
                conn = on
            else:
                conn = await stack.enter_async_context(self._pool.acquire())
                await stack.enter_async_context(conn.transaction())
            won = {
                r["task_id"]
                for r in await conn.fetch(
                    sql.CLAIM_UNIQUE,
                    [t.unique_hash for t in unique],
                    [t.id for t in unique],
                    [t.unique_for_ms for t in unique],
                )
            }
            keep = [t for t in ordered if t.unique_hash is None or t.id in won]
            args = _flat(_insert_args(keep, key_ttl_ms, counted))
            rows = list(await conn.fetch(*args)) if keep else []
            made = {r["id"] for r in rows}
            unused = [t.id for t in unique if t.id in won and t.id not in made]
            if unused:
                await conn.execute(sql.DROP_UNIQUE_CLAIMS, unused)
        return rows, [t for t in unique if t.id not in won]

    async def _holders(
        self, conn: Any, lost: Sequence[NewTask], rejected: dict[uuid.UUID, str]
    ) -> dict[uuid.UUID, Task]:
        """The task holding each lost task's unique identity (those found in no task go to
        ``rejected``)."""
        if not lost:
            return {}
        rows = await conn.fetch(sql.SELECT_UNIQUE_HOLDERS, list({t.unique_hash for t in lost}))
        holders = {bytes(r["unique_hash"]): task_view(r) for r in rows}
        out: dict[uuid.UUID, Task] = {}
        for t in lost:
            holder = holders.get(t.unique_hash) if t.unique_hash is not None else None
            if holder is None:
                rejected[t.id] = "the task holding this unique identity no longer exists; retry"
            else:
                out[t.id] = holder
        return out

    async def _insert_plain(
        self, conn: Any, tasks: Sequence[NewTask], shared: Shared, counted: bool
    ) -> InsertResult:
        """``INSERT_TASKS_PLAIN``: every task queued, one timestamp for all of them."""
        row = await conn.fetchrow(
            sql.INSERT_TASKS_PLAIN,
            [t.id for t in tasks],
            [t.type for t in tasks],
            [t.priority for t in tasks],
            [t.payload.decode() for t in tasks],
            *shared,
            counted,
        )
        at = row["at"]
        inserted = {t.id: _inserted_view(t, _NowRow(at)) for t in tasks}
        outbox = [row["outbox_id"]] if row["outbox_id"] is not None else []
        return InsertResult(inserted=inserted, existing={}, outbox_ids=outbox)

    async def get_task(self, task_id: uuid.UUID, tenant: str | None = None) -> Task | None:
        """A task by id, if it is ``tenant``'s (None: anyone's)."""
        row = await self._pool.fetchrow(sql.SELECT_TASK_OF, task_id, tenant)
        return task_view(row) if row is not None else None

    async def list_tasks(
        self,
        *,
        status: str | None,
        type: str | None,
        priority: str | None,
        after: uuid.UUID | None,
        limit: int,
        since: uuid.UUID | None = None,
        tenant: str | None = None,
    ) -> list[Task]:
        """Newest first: ids are time-ordered (version 7), so the id is the order and the
        cursor (``after``: the last id of the previous page); ``since`` is the smallest id
        wanted (``ids.floor`` of a creation time), so a time range is a range of the key.
        Only ``tenant``'s tasks, when given."""
        query = sql.LIST_TASKS_OF_TENANT if tenant not in (None, "default") else sql.LIST_TASKS
        rows = await self._pool.fetch(query, status, type, priority, after, limit, tenant, since)
        return [task_view(r) for r in rows]

    async def list_tasks_bounded(
        self,
        *,
        status: str | None,
        type: str | None,
        priority: str | None,
        after: uuid.UUID | None,
        limit: int,
        since: uuid.UUID | None,
        scan: int,
        tenant: str | None = None,
    ) -> tuple[list[Task], uuid.UUID | None]:
        """``list_tasks`` looking at no more than ``scan`` tasks (newest first from
        ``after``; of ``tenant`` when given): the matches, and where to continue when the walk
        ended before the page was full (the oldest id looked at; None when the key range is
        exhausted)."""
        own = tenant not in (None, "default")
        query = sql.LIST_TASKS_BOUNDED_OF_TENANT if own else sql.LIST_TASKS_BOUNDED
        rows = await self._pool.fetch(
            query, status, type, priority, after, limit, tenant, since, scan
        )
        tasks = [task_view(r) for r in rows]
        if len(tasks) == limit:
            return tasks, None
        end_query = sql.TASKS_WALK_END_OF_TENANT if own else sql.TASKS_WALK_END
        end: uuid.UUID | None = await self._pool.fetchval(end_query, after, since, tenant, scan)
        return tasks, end

    async def task_of_idempotency_key(
        self, key: str, tenant: str | None = None
    ) -> uuid.UUID | None:
        """The task an idempotency key names, while the key is held (of ``tenant`` when
        given; else the default tenant's, then any tenant's, the newest). The keys' primary
        key is (tenant, key): a lookup that names the tenant is one index probe, and the
        default tenant first makes it one with authentication off too."""
        found: uuid.UUID | None = await self._pool.fetchval(
            sql.TASK_OF_IDEMPOTENCY_KEY, key, tenant or DEFAULT_TENANT
        )
        if found is None and tenant is None:
            found = await self._pool.fetchval(sql.TASK_OF_IDEMPOTENCY_KEY, key, None)
        return found

    async def cancel_task(self, task_id: uuid.UUID, tenant: str | None = None) -> Task | None:
        """Cancel a task (of ``tenant`` only, when given) that has not started; ``None`` if
        it is missing or past that. Locks in the watcher's order (due rows, then the task
        row): see ``LOCK_DUE_OF_TASK``."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(sql.LOCK_DUE_OF_TASK, task_id)
            row = await conn.fetchrow(sql.CANCEL_TASK, task_id, tenant)
        return task_view(row) if row is not None else None

    async def attempts(self, task_id: uuid.UUID) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(sql.SELECT_ATTEMPTS, task_id)
        return [dict(r) for r in rows]

    async def claim(
        self,
        ids: Sequence[uuid.UUID],
        attempts: Sequence[int],
        entry_ids: Sequence[str],
        consumer: str,
        *,
        own: bool = False,
    ) -> list[ClaimedTask]:
        """Mark delivered tasks running for ``consumer``; returns only those whose attempt and
        status still match (the others are stale deliveries to drop)."""
        query = sql.CLAIM_OWN if own else sql.CLAIM
        rows = await self._pool.fetch(query, ids, attempts, consumer, entry_ids)
        return [ClaimedTask(*r) for r in rows]

    async def release(
        self, ids: Sequence[uuid.UUID], attempts: Sequence[int], consumer: str
    ) -> tuple[set[uuid.UUID], int | None]:
        """Put claimed, never started tasks back to queued; the ids released and the outbox
        row naming them (delete it with ``outbox_done`` once their entries are published)."""
        rows = await self._pool.fetch(sql.RELEASE, ids, attempts, consumer)
        return {r["id"] for r in rows}, (rows[0]["outbox_id"] if rows else None)

    async def outbox_done(self, ids: Sequence[int]) -> None:
        """The entries of these outbox rows are in Redis: the rows go."""
        if ids:
            await self._pool.execute(sql.OUTBOX_DONE, list(ids))

    async def complete(self, outcomes: Sequence[Outcome]) -> set[uuid.UUID]:
        """Record a batch of outcomes in one transaction; returns the task ids recorded (an
        outcome whose attempt was fenced off is not). Successes that return nothing, of tasks
        without a unique identity (the usual ones), go in the plain statement; the others in
        one that also writes results and releases identities."""
        # In id order, so that two writers of overlapping rows (a completer and a janitor)
        # tend to lock them in one order; a deadlock left is retried by the boundary.
        plain: list[Outcome] = []
        rich: list[Outcome] = []
        retry: list[Outcome] = []
        dead: list[Outcome] = []
        snoozed: list[Outcome] = []
        for o in sorted(outcomes, key=lambda o: o.task_id):
            kind = o.kind
            if kind == "succeeded":
                (plain if o.result is None and not o.unique else rich).append(o)
            elif kind == "retry":
                retry.append(o)
            elif kind == "dead":
                dead.append(o)
            elif kind == "snooze":
                snoozed.append(o)
        statements: list[tuple[str, list[list[Any]]]] = []
        if plain:
            statements.append((sql.COMPLETE_SUCCEEDED, _ids(plain)))
        if rich:
            results = [_text(o.result) for o in rich]
            statements.append((sql.COMPLETE_SUCCEEDED_WITH, [*_ids(rich), results]))
        if retry:
            statements.append((sql.COMPLETE_RETRY, _failed(retry, [o.delay_ms for o in retry])))
        if dead:
            statements.append((sql.COMPLETE_DEAD, _failed(dead, [o.reason for o in dead])))
        if snoozed:
            delays = [o.delay_ms for o in snoozed]
            statements.append((sql.COMPLETE_SNOOZE, [*_ids(snoozed), delays]))
        if not statements:
            return set()
        if len(statements) == 1:  # the common case: one statement commits on its own
            query, args = statements[0]
            return {r["id"] for r in await self._pool.fetch(query, *args)}
        recorded: set[uuid.UUID] = set()
        async with self._pool.acquire() as conn, conn.transaction():
            for query, args in statements:
                recorded.update(r["id"] for r in await conn.fetch(query, *args))
        return recorded

    async def finished_tasks(self, ids: Sequence[uuid.UUID]) -> list[Task]:
        """Those of these tasks that have ended (succeeded, dead or cancelled)."""
        rows = await self._pool.fetch(sql.SELECT_FINISHED_TASKS, list(ids))
        return [task_view(r) for r in rows]

    @contextlib.asynccontextmanager
    async def exactly_once(self, task_id: uuid.UUID, attempt: int) -> AsyncIterator[Settlement]:
        """A transaction for a handler's writes (``settlement.tx``) that commits only together
        with the task's success and its result (``settlement.result``, set before leaving),
        fenced by ``attempt``; raises ``Fenced`` (all rolled back) if the attempt was taken
        over, and rolls back when the handler raises. (A context manager, so the boundary is
        here: driver errors of the transaction itself are translated; the handler's own errors
        pass through.)"""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                settlement = Settlement(_Transaction(conn))
                yield settlement
                result = _text(settlement.result)
                done = await conn.fetchval(sql.COMPLETE_SUCCEEDED_ONE, task_id, attempt, result)
                if done is None:
                    raise Fenced(f"task {task_id} attempt {attempt} was taken over")
        except Exception as exc:
            if is_driver_error(exc) and not _from_handler(exc):
                raise translate(exc) from exc
            raise


def _from_handler(exc: BaseException) -> bool:
    """Whether a driver error came out of the handler's own statement (marked by
    ``_Transaction``), which the handler sees as it is."""
    return getattr(exc, "_taskstream_handler", False) is True


def _flat(statement: tuple[str, list[Any]]) -> tuple[Any, ...]:
    query, args = statement
    return (query, *args)


def _ids(outcomes: Sequence[Outcome]) -> list[list[Any]]:
    return [[o.task_id for o in outcomes], [o.attempt for o in outcomes]]


def _failed(outcomes: Sequence[Outcome], last: list[Any]) -> list[list[Any]]:
    """Arguments of the failure statements: ids, attempts, errors, labels, then ``last``."""
    return [*_ids(outcomes), [_text(o.error) for o in outcomes], [o.outcome for o in outcomes],
            last]  # fmt: skip
