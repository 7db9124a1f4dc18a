"""The only module that talks to Postgres (asyncpg).

Services call typed methods (``insert_tasks``, ``claim``, ``complete``…); the SQL lives in
``shared.sql`` as named constants and migrations in ``migrations/`` as numbered files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec

from shared import sql
from shared.errors import StoreUnavailable
from shared.models import ErrorInfo, NewTask, TaskView
from shared.ops_models import (
    AttemptView,
    DeadLetterView,
    DlqFilter,
    DlqRef,
    TaskRecord,
    TaskSummary,
)

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Any constant will do, as long as every migrator uses the same one.
MIGRATION_LOCK = 0x7461736B  # "task"

# What "the store is down" looks like from asyncpg: the connection could not be made or broke.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)


def _unavailable(fn: F) -> F:
    """Turn "the connection could not be made or broke" into ``StoreUnavailable``."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"Postgres is not reachable: {exc!r}") from exc

    return cast(F, wrapper)


_error_decoder = msgspec.json.Decoder(ErrorInfo)


class ClaimedTask(msgspec.Struct, frozen=True):
    """A task an executor now holds (status running, this attempt). Positional, in the
    column order of the CLAIM queries' RETURNING lists (built once per task on a hot path)."""

    id: uuid.UUID
    attempt: int
    type: str
    priority: str
    payload: str  # JSON text
    timeout_ms: int
    max_attempts: int
    first_attempt: int
    retry_base_ms: int
    retry_max_ms: int
    retry_jitter_ms: int
    queued_at: dt.datetime | None
    started_at: dt.datetime

    @property
    def attempts_used(self) -> int:
        return self.attempt - self.first_attempt + 1


class TaskState(msgspec.Struct, frozen=True, kw_only=True):
    """Where a task stands, for the janitor's decisions."""

    id: uuid.UUID
    attempt: int
    status: str
    entry_id: str | None
    type: str
    priority: str
    consumer: str | None
    first_attempt: int
    max_attempts: int
    retry_base_ms: int
    retry_max_ms: int
    retry_jitter_ms: int

    @property
    def attempts_used(self) -> int:
        return self.attempt - self.first_attempt + 1


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """How one attempt ended, for ``Database.complete``.

    ``kind`` is ``succeeded``, ``retry`` or ``dead`` (``committed`` and ``fenced``: an
    exactly-once handler's transaction already settled it); ``outcome`` is the history label
    (``failed``, ``timeout``, ``dead``, …); ``error`` is JSON of ``ErrorInfo``.
    """

    task_id: uuid.UUID
    attempt: int
    kind: str
    outcome: str = "failed"
    error: bytes | None = None
    delay_ms: int = 0
    reason: str = ""


class Ready(msgspec.Struct, frozen=True, kw_only=True):
    """A task made ready to deliver (by the watcher): what its stream entry carries."""

    id: uuid.UUID
    attempt: int
    priority: str
    trace_context: str | None = None
    late_s: float = 0.0


Publisher = Callable[[list[Ready]], Awaitable[object]]


class Fenced(Exception):
    """The attempt was taken over before its transaction could commit; nothing was written."""


class _Transaction:
    """What an exactly-once handler gets as ``ctx.db``: queries only, no commit or close."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def execute(self, query: str, *args: Any) -> str:
        return str(await self._conn.execute(query, *args))

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        return list(await self._conn.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> Any:
        return await self._conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._conn.fetchval(query, *args)


class InsertResult(msgspec.Struct, frozen=True, kw_only=True):
    """What ``insert_tasks`` did: the rows it created (by id), and for each requested task
    not created because its idempotency key was taken (by the requested id), the task holding
    the key and whether that task's request digest matches this one's."""

    inserted: dict[uuid.UUID, TaskView]
    existing: dict[uuid.UUID, tuple[TaskView, bool]]


class Database:
    """A pool of connections and the typed operations on tasks."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, url: str, *, min_size: int = 2, max_size: int = 10) -> Database:
        try:
            pool = await asyncpg.create_pool(
                url, min_size=min_size, max_size=max_size, command_timeout=60, reset=_reset
            )
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"Postgres is not reachable: {exc}") from exc
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    @_unavailable
    async def ping(self) -> None:
        await self._pool.fetchval(sql.PING, timeout=2)

    @_unavailable
    async def insert_tasks(self, tasks: Sequence[NewTask]) -> InsertResult:
        """Insert tasks in one statement (all or nothing); a taken idempotency key inserts
        nothing and returns the task that holds it."""
        # Sorted by key so that concurrent batches take key locks in one order (no deadlock).
        ordered = sorted(tasks, key=lambda t: t.idempotency_key or "")
        cols: list[list[Any]] = [[] for _ in range(14)]
        for t in ordered:
            row = (
                t.id,
                t.type,
                t.priority,
                t.payload.decode(),
                t.status,
                t.max_attempts,
                t.retry_base_ms,
                t.retry_max_ms,
                t.retry_jitter_ms,
                t.timeout_ms,
                t.idempotency_key,
                t.request_hash,
                t.run_at,
                t.trace_context,
            )
            for col, value in zip(cols, row, strict=True):
                col.append(value)
        # One statement, so it commits on its own: no BEGIN and COMMIT round trips. A taken
        # key was committed before ON CONFLICT skipped it (it waits for an in-flight holder),
        # so the lookups below, in statements of their own, always find it.
        rows = await self._pool.fetch(sql.INSERT_TASKS, *cols)
        inserted = {r["id"]: task_view(r) for r in rows}
        taken = [t for t in ordered if t.idempotency_key is not None and t.id not in inserted]
        existing: dict[uuid.UUID, tuple[TaskView, bool]] = {}
        if taken:
            # Compared per requested task: one batch may repeat a key with other bodies.
            keys = {
                k["key"]: k
                for k in await self._pool.fetch(
                    sql.SELECT_IDEMPOTENCY_KEYS, [t.idempotency_key for t in taken]
                )
            }
            by_id = {
                r["id"]: task_view(r)
                for r in await self._pool.fetch(
                    sql.SELECT_TASKS, [k["task_id"] for k in keys.values()]
                )
            }
            for t in taken:
                k = keys[t.idempotency_key]
                same = bytes(k["request_hash"]) == t.request_hash
                existing[t.id] = (by_id[k["task_id"]], same)
        return InsertResult(inserted=inserted, existing=existing)

    @_unavailable
    async def get_task(self, task_id: uuid.UUID) -> TaskView | None:
        row = await self._pool.fetchrow(sql.SELECT_TASK, task_id)
        return task_view(row) if row is not None else None

    @_unavailable
    async def list_tasks(
        self,
        *,
        status: str | None,
        type: str | None,
        priority: str | None,
        after: tuple[dt.datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[TaskView]:
        created, task_id = after if after is not None else (None, None)
        rows = await self._pool.fetch(
            sql.LIST_TASKS, status, type, priority, created, task_id, limit
        )
        return [task_view(r) for r in rows]

    @_unavailable
    async def cancel_task(self, task_id: uuid.UUID) -> TaskView | None:
        """Cancel a task that has not started; ``None`` if it is missing or past that."""
        row = await self._pool.fetchrow(sql.CANCEL_TASK, task_id)
        return task_view(row) if row is not None else None

    @_unavailable
    async def attempts(self, task_id: uuid.UUID) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(sql.SELECT_ATTEMPTS, task_id)
        return [dict(r) for r in rows]

    @_unavailable
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

    @_unavailable
    async def release(
        self, ids: Sequence[uuid.UUID], attempts: Sequence[int], consumer: str
    ) -> set[uuid.UUID]:
        """Put claimed, never started tasks back to queued."""
        rows = await self._pool.fetch(sql.RELEASE, ids, attempts, consumer)
        return {r["id"] for r in rows}

    @_unavailable
    async def complete(self, outcomes: Sequence[Outcome]) -> set[uuid.UUID]:
        """Record a batch of outcomes in one transaction; returns the task ids recorded (an
        outcome whose attempt was fenced off is not)."""
        statements: list[tuple[str, list[list[Any]]]] = []
        for kind, query in _COMPLETE.items():
            mine = [o for o in outcomes if o.kind == kind]
            if not mine:
                continue
            args: list[list[Any]] = [[o.task_id for o in mine], [o.attempt for o in mine]]
            if kind != "succeeded":
                last = [o.delay_ms if kind == "retry" else o.reason for o in mine]
                args += [[_text(o.error) for o in mine], [o.outcome for o in mine], last]
            statements.append((query, args))
        if len(statements) == 1:  # the common case: one statement commits on its own
            query, args = statements[0]
            return {r["id"] for r in await self._pool.fetch(query, *args)}
        recorded: set[uuid.UUID] = set()
        async with self._pool.acquire() as conn, conn.transaction():
            for query, args in statements:
                recorded.update(r["id"] for r in await conn.fetch(query, *args))
        return recorded

    @_unavailable
    async def task_states(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, TaskState]:
        rows = await self._pool.fetch(sql.STALLED_TASKS, list(ids))
        return {r["id"]: TaskState(**dict(r)) for r in rows}

    @_unavailable
    async def running_before(self, before: dt.datetime, limit: int) -> list[TaskState]:
        rows = await self._pool.fetch(sql.RUNNING_BEFORE, before, limit)
        return [TaskState(**dict(r)) for r in rows]

    @_unavailable
    async def record_dead_entries(
        self, entries: Sequence[tuple[str, str, dict[str, str]]], reason: str
    ) -> None:
        """Keep undecodable stream entries: ``(priority, entry_id, fields)``."""
        if not entries:
            return
        await self._pool.execute(
            sql.INSERT_DEAD_ENTRIES,
            [e[0] for e in entries],
            [e[1] for e in entries],
            [msgspec.json.encode(e[2]).decode() for e in entries],
            [reason] * len(entries),
        )

    @_unavailable
    async def move_due(self, limit: int, publish: Publisher) -> list[Ready]:
        """Move due rows to queued, commit, then ``publish`` them.

        Publishing after the commit matters: an entry added before it could reach an
        executor whose claim still sees the task ``retrying`` and drops the entry. A crash
        (or a failed publish) after the commit leaves queued tasks without an entry, which
        the watcher's repair re-sends; nothing is lost either way.
        """
        rows = [Ready(**dict(r)) for r in await self._pool.fetch(sql.MOVE_DUE, limit)]
        if rows:
            await publish(rows)
        return rows

    @_unavailable
    async def republish_queued(
        self, priority: str, before: dt.datetime, limit: int, publish: Publisher
    ) -> list[Ready]:
        """Re-send queued tasks of ``priority`` last published before ``before`` (stamped, then
        published after the commit, like ``move_due``)."""
        rows = [
            Ready(**dict(r))
            for r in await self._pool.fetch(sql.REPUBLISH_QUEUED, priority, before, limit)
        ]
        if rows:
            await publish(rows)
        return rows

    @contextlib.asynccontextmanager
    async def exactly_once(self, task_id: uuid.UUID, attempt: int) -> AsyncIterator[_Transaction]:
        """A transaction for a handler's writes that commits only together with the task's
        success, fenced by ``attempt``; raises ``Fenced`` (all rolled back) if the attempt was
        taken over, and rolls back when the handler raises."""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                yield _Transaction(conn)
                if await conn.fetchval(sql.COMPLETE_SUCCEEDED_ONE, task_id, attempt) is None:
                    raise Fenced(f"task {task_id} attempt {attempt} was taken over")
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"Postgres is not reachable: {exc!r}") from exc

    async def prepare_all(self) -> list[str]:
        """Prepare every named query (a test runs this against a migrated database)."""
        async with self._pool.acquire() as conn:
            for name, query in sql.ALL.items():
                try:
                    await conn.prepare(query)
                except asyncpg.PostgresError as exc:
                    raise AssertionError(f"query {name} does not prepare: {exc}") from exc
        return list(sql.ALL)

    @_unavailable
    async def unfinished(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        """Of ``ids``, the tasks not yet succeeded, dead or cancelled, with their status."""
        rows = await self._pool.fetch(sql.SELECT_UNFINISHED, ids)
        return {r["id"]: r["status"] for r in rows}

    @_unavailable
    async def timings(self, ids: Sequence[uuid.UUID]) -> list[TaskTiming]:
        """The timeline of each of ``ids`` that exists (load generator reports)."""
        rows = await self._pool.fetch(sql.SELECT_TIMINGS, ids)
        return [TaskTiming(**dict(r)) for r in rows]

    @_unavailable
    async def server_version(self) -> str:
        return str(await self._pool.fetchval(sql.SERVER_VERSION))

    @_unavailable
    async def bench_insert(
        self, ids: Sequence[uuid.UUID], types: Sequence[str], priorities: Sequence[str]
    ) -> int:
        """Insert bare queued task rows in one statement (benchmark ceiling); rows inserted."""
        payloads = ["{}"] * len(ids)
        status = await self._pool.execute(sql.BENCH_INSERT, ids, types, priorities, payloads)
        return int(status.rsplit(" ", 1)[1])

    @_unavailable
    async def bench_update(self, ids: Sequence[uuid.UUID], attempts: Sequence[int]) -> int:
        """Mark task rows succeeded in one statement (benchmark ceiling); rows updated."""
        status = await self._pool.execute(sql.BENCH_UPDATE, ids, attempts)
        return int(status.rsplit(" ", 1)[1])

    @_unavailable
    async def queue_depths(self) -> dict[str, dict[str, int]]:
        """Per priority: due rows waiting by kind (``retry``, ``delayed``) and ``dead``
        letters held."""
        out: dict[str, dict[str, int]] = {}
        for r in await self._pool.fetch(sql.QUEUE_DEPTHS):
            out.setdefault(r["priority"], {})[r["kind"]] = int(r["n"])
        return out

    @_unavailable
    async def task_summaries(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, TaskSummary]:
        """Type, status, attempt and age of several tasks (one query, no payload)."""
        rows = await self._pool.fetch(sql.TASK_SUMMARIES, list(ids))
        return {r["id"]: TaskSummary(**dict(r)) for r in rows}

    @_unavailable
    async def task_record(self, task_id: uuid.UUID) -> TaskRecord | None:
        """A task row, its failed attempts and its dead letter, read in one snapshot."""
        snapshot = {"isolation": "repeatable_read", "readonly": True}
        async with self._pool.acquire() as conn, conn.transaction(**snapshot):
            row = await conn.fetchrow(sql.SELECT_TASK, task_id)
            if row is None:
                return None
            attempts = await conn.fetch(sql.SELECT_ATTEMPTS, task_id)
            letter = await conn.fetchrow(sql.SELECT_DEAD_LETTER, task_id)
        return TaskRecord(
            task=task_view(row),
            first_attempt=row["first_attempt"],
            consumer=row["consumer"],
            entry_id=row["entry_id"],
            attempts=[
                AttemptView(
                    attempt=a["attempt"],
                    outcome=a["outcome"],
                    consumer=a["consumer"],
                    started_at=a["started_at"],
                    finished_at=a["finished_at"],
                    error=_error_info(a["error"]),
                )
                for a in attempts
            ],
            dead_letter=_dead_letter_view(letter) if letter is not None else None,
        )

    @_unavailable
    async def list_dead_letters(
        self,
        where: DlqFilter,
        *,
        after: tuple[dt.datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[DeadLetterView]:
        """A page of dead letters, newest first; ``after`` is the last (dead_at, task_id)."""
        dead_at, task_id = after if after is not None else (None, None)
        rows = await self._pool.fetch(
            sql.LIST_DEAD_LETTERS, *_dlq_args(None, where), dead_at, task_id, limit
        )
        return [_dead_letter_view(r) for r in rows]

    @_unavailable
    async def match_dead_letters(
        self,
        ids: Sequence[uuid.UUID] | None,
        where: DlqFilter,
        *,
        replayable: bool,
        limit: int,
    ) -> tuple[int, list[DlqRef]]:
        """How many dead letters match (only those a replay would take if ``replayable``),
        and the first ``limit`` of them, oldest first. Changes nothing (dry runs)."""
        query = sql.MATCH_DEAD_LETTERS if replayable else sql.MATCH_DEAD_LETTERS_ANY
        rows = await self._pool.fetch(query, *_dlq_args(ids, where), limit)
        return (int(rows[0]["total"]) if rows else 0), [_dlq_ref(r) for r in rows]

    @_unavailable
    async def replay_dead_letters(
        self,
        ids: Sequence[uuid.UUID] | None,
        where: DlqFilter,
        limit: int,
        publish: Publisher,
    ) -> list[DlqRef]:
        """Replay up to ``limit`` matching dead letters, oldest first, in one transaction:
        each task is queued with fresh attempts (``first_attempt = attempt = attempt + 1``)
        and its letter deleted; after the commit ``publish`` adds the entries (see
        ``move_due`` for why after). A crash or failed publish in between leaves queued
        tasks without entries, which the watcher's repair re-sends."""
        rows = await self._pool.fetch(sql.REPLAY_DEAD_LETTERS, *_dlq_args(ids, where), limit)
        if rows:
            await publish(
                [
                    Ready(
                        id=r["id"],
                        attempt=r["attempt"],
                        priority=r["priority"],
                        trace_context=r["trace_context"],
                    )
                    for r in rows
                ]
            )
        return [
            DlqRef(
                task_id=r["id"],
                priority=r["priority"],
                type=r["type"],
                reason=r["reason"],
                dead_at=r["dead_at"],
            )
            for r in rows
        ]

    @_unavailable
    async def purge_dead_letters(
        self, ids: Sequence[uuid.UUID] | None, where: DlqFilter, limit: int
    ) -> list[DlqRef]:
        """Delete up to ``limit`` matching dead-letter records, oldest first; the tasks stay
        ``dead`` with their history."""
        rows = await self._pool.fetch(sql.PURGE_DEAD_LETTERS, *_dlq_args(ids, where), limit)
        return [_dlq_ref(r) for r in rows]

    @_unavailable
    async def now(self) -> dt.datetime:
        """The database's clock."""
        value: dt.datetime = await self._pool.fetchval(sql.DB_NOW)
        return value


# Outcome kind → the statement recording it: (ids, attempts[, errors, labels, delay|reason]).
_COMPLETE = {
    "succeeded": sql.COMPLETE_SUCCEEDED,
    "retry": sql.COMPLETE_RETRY,
    "dead": sql.COMPLETE_DEAD,
}


async def _reset(conn: asyncpg.Connection) -> None:
    """Run when a connection goes back to the pool. asyncpg's default sends a reset query
    (unlisten, unlock, RESET ALL) each time: a round trip per pooled query. Nothing here uses
    session state, so only an unfinished transaction needs ending."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def _text(raw: bytes | None) -> str | None:
    return raw.decode() if raw is not None else None


def task_view(row: asyncpg.Record) -> TaskView:
    error = row["last_error"]
    return TaskView(
        id=row["id"],
        type=row["type"],
        priority=row["priority"],
        status=row["status"],
        attempt=row["attempt"],
        max_attempts=row["max_attempts"],
        payload=msgspec.json.decode(row["payload"]),
        idempotency_key=row["idempotency_key"],
        run_at=row["run_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        queued_at=row["queued_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        timeout_ms=row["timeout_ms"],
        last_error=_error_decoder.decode(error) if error is not None else None,
    )


async def migrate(url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the numbered SQL files not yet applied, in order, each in its own transaction.

    Safe when several migrators start at once: they queue on an advisory lock. Returns the
    names of the files applied by this call.
    """
    files = sorted(p for p in directory.glob("*.sql") if p.name[:4].isdigit())
    conn = await _connect(url)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_version (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_version")}
            for path in files:
                version = int(path.name.split("_", 1)[0])
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute(
                        "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
                        version,
                        path.name,
                    )
                log.info("applied migration %s", path.name, extra={"event": "db.migrated"})
                applied.append(path.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    finally:
        await conn.close()
    return applied


async def schema_version(url: str) -> int:
    conn = await _connect(url)
    try:
        value = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
        return int(value)
    finally:
        await conn.close()


async def create_database(url: str, *, template: str | None = None) -> bool:
    """Create the database named in ``url`` if it does not exist; True if it was created."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/") or "postgres"
    admin = await _connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        clause = f" TEMPLATE {_ident(template)}" if template else ""
        try:
            await admin.execute(f"CREATE DATABASE {_ident(name)}{clause}")
        except asyncpg.DuplicateDatabaseError:
            return False
        return True
    finally:
        await admin.close()


async def drop_database(url: str) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = await _connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")
    finally:
        await admin.close()


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name``."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


async def _connect(url: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(url, timeout=10)
    except UNAVAILABLE as exc:
        raise StoreUnavailable(f"Postgres is not reachable: {exc}") from exc


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class TaskTiming(msgspec.Struct, frozen=True, kw_only=True):
    """One task's timeline, as the load generator reports it (database clock)."""

    id: uuid.UUID
    type: str
    priority: str
    status: str
    attempts: int  # attempts used, the final one included
    consumer: str | None  # the executor of the final attempt
    created_at: dt.datetime
    queued_at: dt.datetime | None  # when the first attempt was queued
    first_started_at: dt.datetime | None  # when the first attempt started
    started_at: dt.datetime | None  # when the final attempt started
    finished_at: dt.datetime | None
    reaped: int | None = 0  # attempts reclaimed after the visibility timeout (None: unknown)


def _error_info(raw: str | None) -> ErrorInfo | None:
    """A stored error, leniently: one that is not an ``ErrorInfo`` is shown as its JSON."""
    if raw is None:
        return None
    try:
        return _error_decoder.decode(raw)
    except msgspec.ValidationError:
        return ErrorInfo(type="unknown", message=raw)


def _dead_letter_view(row: asyncpg.Record) -> DeadLetterView:
    return DeadLetterView(
        task_id=row["task_id"],
        priority=row["priority"],
        type=row["type"],
        attempt=row["attempt"],
        attempts=row["attempts"],
        reason=row["reason"],
        error=_error_info(row["error"]),
        dead_at=row["dead_at"],
        created_at=row["created_at"],
    )


def _dlq_ref(row: asyncpg.Record) -> DlqRef:
    return DlqRef(
        task_id=row["task_id"],
        priority=row["priority"],
        type=row["type"],
        reason=row["reason"],
        dead_at=row["dead_at"],
    )


def _dlq_args(ids: Sequence[uuid.UUID] | None, where: DlqFilter) -> tuple[Any, ...]:
    """Parameters $1..$7 of the dead-letter queries (see ``shared.sql``)."""
    return (
        list(ids) if ids is not None else None,
        where.priority,
        where.type,
        where.reason,
        where.error,
        where.since,
        where.until,
    )
