"""Turning request bodies into validated tasks, and validation failures into API errors. The
rules themselves are shared with ``enqueue`` (``shared/submit.py``); this module decodes the
HTTP bodies and answers ``SubmitError`` as ``Invalid``."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from taskstream.services.ingest.errors import Invalid
from taskstream.shared import submit
from taskstream.shared.config import Config
from taskstream.shared.domain import NewTask
from taskstream.shared.models import ApiError, GoTaskRequest, TaskRequest
from taskstream.shared.submit import integral

T = TypeVar("T")
_task_decoder = msgspec.json.Decoder(TaskRequest)
_go_decoder = msgspec.json.Decoder(GoTaskRequest)
_any_decoder = msgspec.json.Decoder()

__all__ = ["convert_task", "decode_go_task", "decode_task", "describe", "invalid", "new_task"]


def invalid(error: submit.SubmitError) -> Invalid:
    """The API error of a task that cannot be submitted."""
    return Invalid(
        error.status, ApiError(code=error.code, message=error.message, field=error.field)
    )


def describe(exc: msgspec.ValidationError, prefix: str = "") -> ApiError:
    """An API error naming the offending field, from a msgspec validation message."""
    error = submit.describe(exc, prefix)
    return ApiError(code="invalid", message=error.message, field=error.field)


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
        return submit.convert_task(item, prefix)
    except submit.SubmitError as exc:
        raise invalid(exc) from None


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
    try:
        return submit.new_task(req, config.tasks, trace_context=trace_context, tenant=tenant)
    except submit.SubmitError as exc:
        raise invalid(exc) from None
