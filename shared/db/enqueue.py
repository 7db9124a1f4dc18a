"""Transactional enqueue's statements, run on the application's own asyncpg connection.

``insert_through(conn, task)`` inserts one validated task inside whatever transaction the
connection is in: the task, its due row or its outbox row (``source = 'enqueue'``) and a
notification on ``taskstream_outbox``, all committed, or rolled back, with the application's
own writes. The watcher's outbox role publishes the row once the notification arrives
(``services/watcher/outbox.py``). A unique task takes its identity first (``CLAIM_UNIQUE``)
and gives it back if its idempotency key turns out taken; those statements need a transaction
of their own when the connection is not in one. Driver errors become the project's (the
boundary's ``translate``) but are not retried here: a statement that lost a race has aborted
the application's transaction, which only the application can run again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import asyncpg.pool

from taskstream.shared import sql
from taskstream.shared.db.boundary import wrap
from taskstream.shared.domain import Enqueued, NewTask
from taskstream.shared.errors import Conflict

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
_CONNECTIONS = (asyncpg.Connection, asyncpg.pool.PoolConnectionProxy)


def _translated(fn: F) -> F:
    """``fn`` with driver exceptions translated (not retried: see the module's docstring)."""
    return wrap(fn, retries=0)


@_translated
async def insert_through(conn: Any, task: NewTask, *, key_ttl_ms: int) -> tuple[Enqueued, bool]:
    """Insert ``task`` through the application's connection ``conn``; returns what was done
    and whether the request matches the one that made the task (False: its idempotency key
    was used with another body)."""
    if not isinstance(conn, _CONNECTIONS):
        raise TypeError(
            "enqueue needs an asyncpg connection (acquire one from your pool, inside your "
            f"transaction), not {type(conn).__name__}"
        )
    if task.unique_hash is None:
        return await _insert(conn, task, key_ttl_ms)
    if conn.is_in_transaction():
        return await _insert_unique(conn, task, key_ttl_ms)
    async with conn.transaction():
        return await _insert_unique(conn, task, key_ttl_ms)


async def _insert(conn: Any, task: NewTask, key_ttl_ms: int) -> tuple[Enqueued, bool]:
    row = await conn.fetchrow(sql.ENQUEUE_TASK, *_args(task, key_ttl_ms))
    if row is not None:
        return Enqueued(id=row["id"], status=row["status"], created=True), True
    found = await _by_key(conn, task)
    if found is None:  # expired and deleted between the two statements, or retention
        raise Conflict("this idempotency key's task no longer exists; enqueue again")
    return found


async def _insert_unique(conn: Any, task: NewTask, key_ttl_ms: int) -> tuple[Enqueued, bool]:
    won = await conn.fetch(sql.CLAIM_UNIQUE, [task.unique_hash], [task.id], [task.unique_for_ms])
    if won:
        row = await conn.fetchrow(sql.ENQUEUE_TASK, *_args(task, key_ttl_ms))
        if row is not None:
            return Enqueued(id=row["id"], status=row["status"], created=True), True
        await conn.execute(sql.DROP_UNIQUE_CLAIMS, [task.id])  # its key was taken
    elif task.idempotency_key is None:
        return await _duplicate(conn, task)
    # The key decides first (a retry of the request that made the task), then the identity.
    found = await _by_key(conn, task)
    if found is not None:
        return found
    if won:
        raise Conflict("this idempotency key's task no longer exists; enqueue again")
    return await _duplicate(conn, task)


async def _by_key(conn: Any, task: NewTask) -> tuple[Enqueued, bool] | None:
    keys = await conn.fetch(sql.SELECT_IDEMPOTENCY_KEYS, task.tenant, [task.idempotency_key])
    if not keys:
        return None
    row = await conn.fetchrow(sql.SELECT_TASK_STATUS, keys[0]["task_id"])
    if row is None:
        return None
    same = bytes(keys[0]["request_hash"]) == task.request_hash
    return Enqueued(id=row["id"], status=row["status"], created=False), same


async def _duplicate(conn: Any, task: NewTask) -> tuple[Enqueued, bool]:
    row = await conn.fetchrow(sql.SELECT_UNIQUE_HOLDERS, [task.unique_hash])
    if row is None:  # released and deleted meanwhile
        raise Conflict("the task holding this unique identity no longer exists; enqueue again")
    return Enqueued(id=row["id"], status=row["status"], created=False, duplicate=True), True


def _args(task: NewTask, key_ttl_ms: int) -> tuple[Any, ...]:
    """``ENQUEUE_TASK``'s parameters, $1..$16."""
    return (
        task.id,
        task.type,
        task.priority,
        task.payload.decode(),
        task.max_attempts,
        task.retry_base_ms,
        task.retry_max_ms,
        task.retry_jitter_ms,
        task.timeout_ms,
        task.idempotency_key,
        task.request_hash,
        task.run_at,
        task.delay_ms,
        task.trace_context,
        key_ttl_ms,
        task.unique_states,
    )
