"""Building a task to insert from its request body: the one place a body's defaults are
resolved, shared by ``POST /v1/tasks`` (ingest) and the tasks a schedule makes (the watcher),
so both are validated and filled in exactly alike."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from taskstream.shared.config import TaskDefaults
from taskstream.shared.domain import NewTask
from taskstream.shared.errors import TaskstreamError
from taskstream.shared.ids import new_id
from taskstream.shared.models import ApiError, Backoff, TaskRequest, json_encoder, request_hash

# The integer fields of a task body: JSON Schema (and so the OpenAPI document) counts 3.0 as an
# integer, msgspec does not, so an integral float there is taken as the integer it is.
_INTEGERS = ("max_attempts", "delay_ms", "timeout_ms", "max_retries")
_BACKOFF_INTEGERS = ("base_ms", "max_ms", "jitter_ms")
_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_FIELD = re.compile(r"Object (?:missing required|contains unknown) field `(?P<name>[^`]+)`")


def describe(exc: msgspec.ValidationError, prefix: str = "") -> ApiError:
    """An API error naming the offending field, from a msgspec validation message."""
    message = str(exc)
    at = _AT.search(message)
    path = at.group("path") if at else ""
    text = message[: at.start()] if at else message
    named = _FIELD.match(text)
    if named:
        path = f"{path}.{named.group('name')}"
    field = (prefix + path).lstrip(".") or None
    return ApiError(code="invalid", message=text, field=field)


def integral(item: Any) -> Any:
    """``item`` (a decoded task body) with integral floats in its integer fields made ints;
    a body without any (the usual case) is returned as it is."""
    if not isinstance(item, dict):
        return item
    for name in _INTEGERS:
        value = item.get(name)
        if isinstance(value, float) and value.is_integer():
            item[name] = int(value)
    backoff = item.get("backoff")
    if isinstance(backoff, dict):
        for name in _BACKOFF_INTEGERS:
            value = backoff.get(name)
            if isinstance(value, float) and value.is_integer():
                backoff[name] = int(value)
    return item


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
