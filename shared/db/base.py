"""Postgres access, shared by the query families: the pool, errors, row types."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Self, TypeVar, cast

import asyncpg
import msgspec

from taskstream.shared import sql
from taskstream.shared.errors import StoreUnavailable
from taskstream.shared.models import ErrorInfo, TaskView
from taskstream.shared.ops_models import (
    DeadLetterView,
    DlqFilter,
    DlqRef,
)

log = logging.getLogger(__name__)


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


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


class Base:
    """A pool of connections; the query families below add their methods to it."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, url: str, *, min_size: int = 2, max_size: int = 10) -> Self:
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
    async def now(self) -> dt.datetime:
        """The database's clock."""
        value: dt.datetime = await self._pool.fetchval(sql.DB_NOW)
        return value


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
        last_error=_error_info(error),
    )


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
