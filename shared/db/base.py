"""Postgres access, shared by the query families: the pool, errors, row types."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, Self

import asyncpg
import msgspec

from taskstream.shared import sql, sql_access, sql_schedules, sql_workflows
from taskstream.shared.db.boundary import is_driver_error, translate, wrap_public
from taskstream.shared.domain import ErrorInfo, Task
from taskstream.shared.errors import StoreUnavailable
from taskstream.shared.ops_models import (
    DeadLetterView,
    DlqFilter,
    DlqRef,
)

log = logging.getLogger(__name__)


_error_decoder = msgspec.json.Decoder(ErrorInfo)


class _Transaction:
    """What an exactly-once handler gets as ``ctx.db``: queries only, no commit or close.

    A lost connection surfaces as ``StoreUnavailable``; other Postgres errors of the handler's
    own statements reach the handler as asyncpg raised them (they are its SQL)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def execute(self, query: str, *args: Any) -> str:
        with _connection_errors():
            return str(await self._conn.execute(query, *args))

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        with _connection_errors():
            return list(await self._conn.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> Any:
        with _connection_errors():
            return await self._conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        with _connection_errors():
            return await self._conn.fetchval(query, *args)


class Settlement:
    """What an exactly-once run settles with: the handler's transaction (``tx``, its
    ``ctx.db``) and the result to store with the success (JSON, or None)."""

    def __init__(self, tx: _Transaction) -> None:
        self.tx = tx
        self.result: bytes | None = None


@contextlib.contextmanager
def _connection_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        error = translate(exc) if is_driver_error(exc) else None
        if isinstance(error, StoreUnavailable):
            raise error from exc
        if error is not None:
            exc._taskstream_handler = True  # type: ignore[attr-defined]  # see exactly_once
        raise


class Base:
    """A pool of connections; the query families below add their methods to it. Every public
    coroutine method of every family goes through the error boundary (``boundary``)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        wrap_public(cls)

    @classmethod
    async def connect(cls, url: str, *, min_size: int = 2, max_size: int = 10) -> Self:
        pool = await asyncpg.create_pool(
            url, min_size=min_size, max_size=max_size, command_timeout=60, reset=_reset
        )
        return cls(pool)

    async def close(self) -> None:
        await self._pool.close()

    async def ping(self) -> None:
        await self._pool.fetchval(sql.PING, timeout=2)

    async def prepare_all(self) -> list[str]:
        """Prepare every named query (a test runs this against a migrated database)."""
        queries = {**sql.ALL, **sql_schedules.ALL, **sql_workflows.ALL, **sql_access.ALL}
        async with self._pool.acquire() as conn:
            for name, query in queries.items():
                try:
                    await conn.prepare(query)
                except asyncpg.PostgresError as exc:
                    raise AssertionError(f"query {name} does not prepare: {exc}") from exc
        return list(queries)

    async def now(self) -> dt.datetime:
        """The database's clock."""
        value: dt.datetime = await self._pool.fetchval(sql.DB_NOW)
        return value


wrap_public(Base)


async def _reset(conn: asyncpg.Connection) -> None:
    """Run when a connection goes back to the pool. asyncpg's default sends a reset query
    (unlisten, unlock, RESET ALL) each time: a round trip per pooled query. Nothing here uses
    session state, so only an unfinished transaction needs ending."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def _text(raw: bytes | None) -> str | None:
    return raw.decode() if raw is not None else None


def task_view(row: asyncpg.Record) -> Task:
    error = row["last_error"]
    return Task(
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
        tenant=row["tenant"],
        result=msgspec.json.decode(result) if (result := row["result"]) is not None else None,
        schedule=row["schedule"],
        scheduled_for=row["scheduled_for"],
        workflow_id=row["workflow_id"],
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


def _dlq_args(
    ids: Sequence[uuid.UUID] | None, where: DlqFilter, tenant: str | None = None
) -> tuple[Any, ...]:
    """Parameters $1..$8 of the dead-letter queries (see ``shared.sql``)."""
    return (
        list(ids) if ids is not None else None,
        where.priority,
        where.type,
        where.reason,
        where.error,
        where.since,
        where.until,
        tenant,
    )
