"""Building and publishing tasks directly (without HTTP), for executor and mover tests."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.domain import NewTask
from taskstream.shared.streams import Publish, Streams


def new_task(
    config: Config,
    type: str = "noop",
    payload: Any = None,
    *,
    priority: str = "default",
    max_attempts: int | None = None,
    timeout_ms: int | None = None,
    tenant: str = "default",
) -> NewTask:
    return NewTask(
        id=uuid.uuid4(),
        type=type,
        priority=priority,
        payload=msgspec.json.encode({} if payload is None else payload),
        max_attempts=max_attempts or config.tasks.max_attempts,
        retry_base_ms=config.tasks.retry_base_ms,
        retry_max_ms=config.tasks.retry_max_ms,
        retry_jitter_ms=config.tasks.retry_jitter_ms,
        timeout_ms=timeout_ms or config.tasks.task_timeout_ms,
        idempotency_key=None,
        request_hash=None,
        run_at=None,
        tenant=tenant,
    )


async def enqueue(db: Database, streams: Streams, tasks: list[NewTask]) -> list[uuid.UUID]:
    """Insert tasks (queued) and publish one entry each, as ingest does (groups first)."""
    await streams.ensure_groups()
    result = await db.insert_tasks(tasks)
    await streams.publish([Publish(priority=t.priority, task_id=t.id, attempt=1) for t in tasks])
    assert len(result.inserted) == len(tasks)
    return [t.id for t in tasks]
