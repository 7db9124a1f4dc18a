"""Turning request bodies into validated tasks, and validation failures into API errors."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from taskstream.services.ingest.errors import Invalid
from taskstream.shared.config import Config
from taskstream.shared.domain import NewTask
from taskstream.shared.ids import new_id
from taskstream.shared.models import (
    ApiError,
    Backoff,
    GoTaskRequest,
    TaskRequest,
    json_encoder,
    request_hash,
)

T = TypeVar("T")
_task_decoder = msgspec.json.Decoder(TaskRequest)
_go_decoder = msgspec.json.Decoder(GoTaskRequest)
_any_decoder = msgspec.json.Decoder()
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


def decode_task(body: bytes) -> TaskRequest:
    try:
        return _task_decoder.decode(body)
    except msgspec.ValidationError as exc:
        first = exc
    except msgspec.DecodeError as exc:
        raise Invalid(400, ApiError(code="invalid_json", message=str(exc))) from None
    try:  # perhaps an integer written as 3.0: look again with those made ints
        return msgspec.convert(integral(_any_decoder.decode(body)), TaskRequest)
    except msgspec.ValidationError:
        raise Invalid(422, describe(first)) from None
    except msgspec.DecodeError as exc:  # a valid start and then garbage (``1 x``)
        raise Invalid(400, ApiError(code="invalid_json", message=str(exc))) from None


def decode_body(body: bytes, cls: type[T], integers: tuple[str, ...] = ()) -> T:
    """A request body of type ``cls``: 400 for malformed JSON, 422 naming the field for one
    that does not validate. Integral floats (``3.0``) in the top-level ``integers`` fields are
    taken as the integers JSON Schema says they are."""
    try:
        return msgspec.json.decode(body, type=cls)
    except msgspec.ValidationError as exc:
        first = exc
    except msgspec.DecodeError as exc:
        raise Invalid(400, ApiError(code="invalid_json", message=str(exc))) from None
    try:
        item = _any_decoder.decode(body)
        if isinstance(item, dict):
            for name in integers:
                value = item.get(name)
                if isinstance(value, float) and value.is_integer():
                    item[name] = int(value)
        return msgspec.convert(item, cls)
    except msgspec.ValidationError:
        raise Invalid(422, describe(first)) from None
    except msgspec.DecodeError as exc:
        raise Invalid(400, ApiError(code="invalid_json", message=str(exc))) from None


def convert_task(item: Any, prefix: str = "") -> TaskRequest:
    """Validate one already-parsed batch element (``prefix`` goes before the field name)."""
    try:
        return msgspec.convert(integral(item), TaskRequest)
    except msgspec.ValidationError as exc:
        raise Invalid(422, describe(exc, prefix)) from None


def decode_go_task(body: bytes) -> TaskRequest:
    """The Go scheduler's body, mapped onto ours (``max_retries`` retries after the first)."""
    try:
        go = _go_decoder.decode(body)
    except msgspec.ValidationError as exc:
        try:
            go = msgspec.convert(integral(_any_decoder.decode(body)), GoTaskRequest)
        except msgspec.ValidationError:
            raise Invalid(422, describe(exc)) from None
        except msgspec.DecodeError as bad:  # a valid start and then garbage (``1 x``)
            raise Invalid(400, ApiError(code="invalid_json", message=str(bad))) from None
    except msgspec.DecodeError as exc:
        raise Invalid(400, ApiError(code="invalid_json", message=str(exc))) from None
    return TaskRequest(
        type=go.type,
        payload=go.payload,
        priority=go.priority,
        idempotency_key=go.idempotency_key,
        max_attempts=None if go.max_retries is None else go.max_retries + 1,
    )


def new_task(
    req: TaskRequest,
    config: Config,
    *,
    trace_context: str | None = None,
    tenant: str = "default",
) -> NewTask:
    """Resolve defaults and the start time; raise ``Invalid`` for a contradictory request."""
    if req.run_at is not None and req.delay_ms is not None:
        raise Invalid(
            422,
            ApiError(code="invalid", message="give run_at or delay_ms, not both", field="delay_ms"),
        )
    # No clock here: the delay is added to Postgres's now(), and run_at is compared with it,
    # at the insert (ingest's own clock may be off: a task must never start early).
    payload = json_encoder.encode(req.payload)
    if b"\\u0000" in payload and _has_nul(req.payload):
        raise Invalid(
            422,
            ApiError(
                code="invalid",
                message="the payload holds a NUL character (\\u0000), which cannot be stored",
                field="payload",
            ),
        )
    backoff = req.backoff or Backoff()
    return NewTask(
        id=new_id(),
        type=req.type,
        priority=req.priority,
        payload=payload,
        max_attempts=req.max_attempts or config.tasks.max_attempts,
        retry_base_ms=_pick(backoff.base_ms, config.tasks.retry_base_ms),
        retry_max_ms=_pick(backoff.max_ms, config.tasks.retry_max_ms),
        retry_jitter_ms=_pick(backoff.jitter_ms, config.tasks.retry_jitter_ms),
        timeout_ms=req.timeout_ms or config.tasks.task_timeout_ms,
        idempotency_key=req.idempotency_key,
        request_hash=request_hash(req) if req.idempotency_key is not None else None,
        run_at=req.run_at,
        trace_context=trace_context,
        delay_ms=req.delay_ms or None,
        tenant=tenant,
    )


def _has_nul(value: Any) -> bool:
    """Whether a NUL character is in any string (key or value) of a decoded JSON value."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _pick(value: int | None, default: int) -> int:
    return default if value is None else value
