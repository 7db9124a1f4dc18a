"""Building a task to insert from its request body: the one place a body's defaults are
resolved, shared by ``POST /v1/tasks`` (ingest) and the tasks a schedule makes (the watcher),
so both are validated and filled in exactly alike."""

from __future__ import annotations

from typing import Any

from taskstream.shared.config import TaskDefaults
from taskstream.shared.domain import NewTask
from taskstream.shared.errors import TaskstreamError
from taskstream.shared.ids import new_id
from taskstream.shared.models import Backoff, TaskRequest, json_encoder, request_hash


class InvalidTask(TaskstreamError):
    """A task body that validates field by field but cannot be a task; ``field`` names it."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def build_task(
    req: TaskRequest, defaults: TaskDefaults, *, trace_context: str | None = None
) -> NewTask:
    """Resolve defaults and the start time; raise ``InvalidTask`` for a contradictory body."""
    if req.run_at is not None and req.delay_ms is not None:
        raise InvalidTask("give run_at or delay_ms, not both", "delay_ms")
    # No clock here: the delay is added to Postgres's now(), and run_at is compared with it,
    # at the insert (this process's clock may be off: a task must never start early).
    payload = json_encoder.encode(req.payload)
    if b"\\u0000" in payload and has_nul(req.payload):
        raise InvalidTask(
            "the payload holds a NUL character (\\u0000), which cannot be stored", "payload"
        )
    backoff = req.backoff or Backoff()
    return NewTask(
        id=new_id(),
        type=req.type,
        priority=req.priority,
        payload=payload,
        max_attempts=req.max_attempts or defaults.max_attempts,
        retry_base_ms=_pick(backoff.base_ms, defaults.retry_base_ms),
        retry_max_ms=_pick(backoff.max_ms, defaults.retry_max_ms),
        retry_jitter_ms=_pick(backoff.jitter_ms, defaults.retry_jitter_ms),
        timeout_ms=req.timeout_ms or defaults.task_timeout_ms,
        idempotency_key=req.idempotency_key,
        request_hash=request_hash(req) if req.idempotency_key is not None else None,
        run_at=req.run_at,
        trace_context=trace_context,
        delay_ms=req.delay_ms or None,
    )


def has_nul(value: Any) -> bool:
    """Whether a NUL character is in any string (key or value) of a decoded JSON value."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return False


def _pick(value: int | None, default: int) -> int:
    return default if value is None else value
