"""``taskstream.enqueue``: a task inserted inside the application's own Postgres transaction.

    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO users …")
        await taskstream.enqueue(conn, "email.welcome", {"user_id": 42})

The task commits with the application's writes or not at all: a rolled-back transaction
leaves no task and no stream entry. A committed one is published by the watcher, woken by the
notification the transaction sent on commit (``services/watcher/outbox.py``), its periodic
scan the backstop: a crash at any point loses nothing. The body is validated exactly as
``POST /v1/tasks`` validates its JSON (the options are its fields: ``priority``,
``idempotency_key``, ``run_at`` or ``delay_ms``, ``max_attempts``, ``backoff``,
``timeout_ms``, ``unique``), so an idempotency key means the same over both. The connection
is asyncpg's (a pooled one is fine); taskstream's tables must be on its search path.
"""

from __future__ import annotations

from typing import Any

import msgspec

from taskstream.shared import config as config_mod
from taskstream.shared import submit, tracing
from taskstream.shared.config import Config
from taskstream.shared.db.enqueue import insert_through
from taskstream.shared.domain import Enqueued
from taskstream.shared.submit import SubmitError

_config: Config | None = None


def _environment() -> Config:
    """The defaults the services read (MAX_ATTEMPTS, RETRY_*, TASK_TIMEOUT_MS,
    IDEMPOTENCY_TTL_MS…), from this process's environment, read once."""
    global _config
    if _config is None:
        _config = config_mod.load()
    return _config


async def enqueue(
    conn: Any,
    type: str,
    payload: Any = None,
    *,
    config: Config | None = None,
    **options: Any,
) -> Enqueued:
    """Insert a task of ``type`` with ``payload`` (any value msgspec encodes as JSON: dicts,
    lists, Structs, dataclasses…) through ``conn``, an asyncpg connection, inside its current
    transaction (outside one, it commits at once). Returns ``Enqueued(id, status, created,
    duplicate)``: ``created`` False when the idempotency key (same body) or, with
    ``duplicate``, the unique identity was held by that existing task.

    Raises ``SubmitError`` for a body ``POST /v1/tasks`` would refuse (``field`` names what)
    or a key used with another body (``code == "idempotency_conflict"``), ``TypeError`` for
    something other than an asyncpg connection, and the store errors of
    ``taskstream.shared.errors`` (``StoreUnavailable``, ``BadData``, ``Conflict``…) for what
    Postgres refused; those abort the application's transaction, as any failed statement
    does. ``config``: the defaults to fill in (default: from the environment)."""
    settings = config or _environment()
    try:
        body = msgspec.to_builtins(
            {"type": type, "payload": {} if payload is None else payload, **options}
        )
    except TypeError as exc:
        raise SubmitError(f"the task is not JSON: {exc}", "payload") from None
    request = submit.convert_task(body)
    task = submit.new_task(request, settings.tasks, trace_context=tracing.current_traceparent())
    done, same = await insert_through(conn, task, key_ttl_ms=settings.retention.idempotency_ttl_ms)
    if not same:
        raise SubmitError(
            "this idempotency key was used with a different request body",
            "idempotency_key",
            code="idempotency_conflict",
            status=409,
        )
    return done
