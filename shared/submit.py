"""A submitted task's rules, one copy for every way in: HTTP (ingest) and ``enqueue``.

A body (decoded JSON, or the same built from Python values) is validated into a
``TaskRequest`` and resolved into a ``NewTask`` (defaults, the idempotency digest, the unique
identity). A body that cannot be a task raises ``SubmitError`` naming the offending field;
ingest answers it with its ``status``.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import msgspec

from taskstream.shared.config import TaskDefaults
from taskstream.shared.domain import NewTask, unique
from taskstream.shared.errors import TaskstreamError
from taskstream.shared.ids import new_id
from taskstream.shared.models import Backoff, TaskRequest, json_encoder, request_hash

_any_decoder = msgspec.json.Decoder()
# The integer fields of a task body: JSON Schema (and so the OpenAPI document) counts 3.0 as an
# integer, msgspec does not, so an integral float there is taken as the integer it is.
_INTEGERS = ("max_attempts", "delay_ms", "timeout_ms", "max_retries")
_BACKOFF_INTEGERS = ("base_ms", "max_ms", "jitter_ms")
_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_FIELD = re.compile(r"Object (?:missing required|contains unknown) field `(?P<name>[^`]+)`")


class SubmitError(TaskstreamError):
    """A task that cannot be submitted as given. ``code``: ``invalid`` (``field`` names what
    is wrong) or ``idempotency_conflict`` (the key was used with another body); ``status``:
    the HTTP status ingest answers it with."""

    def __init__(
        self, message: str, field: str | None = None, *, code: str = "invalid", status: int = 422
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code
        self.status = status


def describe(exc: msgspec.ValidationError, prefix: str = "") -> SubmitError:
    """The error naming the offending field, from a msgspec validation message."""
    message = str(exc)
    at = _AT.search(message)
    path = at.group("path") if at else ""
    text = message[: at.start()] if at else message
    named = _FIELD.match(text)
    if named:
        path = f"{path}.{named.group('name')}"
    field = (prefix + path).lstrip(".") or None
    return SubmitError(text, field)


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


def convert_task(item: Any, prefix: str = "") -> TaskRequest:
    """Validate one already-parsed body (``prefix`` goes before the field name)."""
    try:
        return msgspec.convert(integral(item), TaskRequest)
    except msgspec.ValidationError as exc:
        raise describe(exc, prefix) from None


def new_task(
    req: TaskRequest,
    defaults: TaskDefaults,
    *,
    trace_context: str | None = None,
    tenant: str = "default",
) -> NewTask:
    """Resolve defaults and the start time; raise ``SubmitError`` for a contradictory
    request."""
    if req.run_at is not None and req.delay_ms is not None:
        raise SubmitError("give run_at or delay_ms, not both", "delay_ms")
    # No clock here: the delay is added to Postgres's now(), and run_at is compared with it,
    # at the insert (this process's clock may be off: a task must never start early).
    payload = json_encoder.encode(req.payload)
    if b"\\u0000" in payload and has_nul(req.payload):
        raise SubmitError(
            "the payload holds a NUL character (\\u0000), which cannot be stored", "payload"
        )
    backoff = req.backoff or Backoff()
    identity: tuple[bytes, int, int | None] | None = None
    if req.unique is not None:
        identity = _unique(req, tenant)
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
        unique_hash=identity[0] if identity else None,
        unique_states=identity[1] if identity else None,
        unique_for_ms=identity[2] if identity else None,
        tenant=tenant,
    )


def _unique(req: TaskRequest, tenant: str) -> tuple[bytes, int, int | None]:
    """The unique identity's hash, states mask and period (ms) of a request. Identities are
    per tenant: another tenant's hash is taken over the tenant's name too (the default
    tenant's is the plain one, as before tenants)."""
    options = req.unique
    assert options is not None
    states = options.states if options.states is not None else unique.DEFAULT_STATES
    missing = unique.missing_states(states)
    if missing:
        raise SubmitError(
            "unique.states must include every status before the end (scheduled, queued, "
            f"running, retrying), missing {', '.join(missing)}; add succeeded, dead or "
            "cancelled to keep the identity after the task ended",
            "unique.states",
        )
    period = unique.period_ms(options.period) if options.period is not None else None
    key = unique.identity(req.type, req.priority, req.payload, options.key, options.by)
    if tenant != "default":
        key = hashlib.sha256(b"tenant\x00" + tenant.encode() + b"\x00" + key).digest()
    return key, unique.states_mask(states), period


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
