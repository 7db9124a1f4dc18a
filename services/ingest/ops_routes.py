"""The ingest API's operator routes: queues, pending entries, task history, dead letters,
consumers. Each is a thin shell over ``shared.ops`` (the CLI calls the same functions), so the
HTTP bodies and ``taskstream … --json`` are the same documents.

Bad query or path parameters are 400 naming the field; a replay body that does not validate
is 422 naming the field; an unreachable store is 503 (the app's middleware).
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from taskstream.services.ingest.validate import Invalid, describe
from taskstream.shared import ops
from taskstream.shared.db import Database
from taskstream.shared.domain import PRIORITIES
from taskstream.shared.models import ApiError
from taskstream.shared.ops_models import DlqFilter, DlqSelection, ReplayRequest
from taskstream.shared.streams import Streams

Handler = Callable[[web.Request], Awaitable[web.Response]]
_encode = msgspec.json.Encoder().encode
_replay_decoder = msgspec.json.Decoder(ReplayRequest)


def _ops_errors(status: int) -> Callable[[Handler], Handler]:
    """Turn ``ops.BadRequest`` into an API error with ``status`` naming the field."""

    def decorate(fn: Handler) -> Handler:
        @functools.wraps(fn)
        async def wrapper(request: web.Request) -> web.Response:
            try:
                return await fn(request)
            except ops.BadRequest as exc:
                error = ApiError(code="invalid", message=str(exc), field=exc.field)
                raise Invalid(status, error) from None

        return wrapper

    return decorate


@_ops_errors(400)
async def get_queues(request: web.Request) -> web.Response:
    db, streams = _stores(request)
    return _json(await ops.queues(db, streams))


@_ops_errors(400)
async def get_pending(request: web.Request) -> web.Response:
    db, streams = _stores(request)
    q = request.query
    result = await ops.pending(
        db,
        streams,
        priority=_priority(request.match_info["priority"]),
        consumer=q.get("consumer") or None,
        min_idle_ms=_int(q, "min_idle_ms", 0),
        limit=_int(q, "limit", 50),
    )
    return _json(result)


@_ops_errors(400)
async def get_task_history(request: web.Request) -> web.Response:
    db, streams = _stores(request)
    task_id = _task_id(request)
    history = await ops.task_history(db, streams, task_id)
    if history is None:
        raise _not_found(f"no task {task_id}")
    return _json(history)


@_ops_errors(400)
async def list_dlq(request: web.Request) -> web.Response:
    db, _ = _stores(request)
    q = request.query
    where = DlqFilter(
        priority=_priority(q["priority"]) if q.get("priority") else None,  # type: ignore[arg-type]
        type=q.get("type") or None,
        reason=q.get("reason") or None,
        error=q.get("error") or None,
        since=_time(q, "since"),
        until=_time(q, "until"),
    )
    page = await ops.dlq_list(db, where, cursor=q.get("cursor") or None, limit=_int(q, "limit", 50))
    return _json(page)


@_ops_errors(422)
async def replay_dlq(request: web.Request) -> web.Response:
    """Replay dead letters; ``dry_run`` defaults to false here (the CLI dry-runs first)."""
    db, streams = _stores(request)
    try:
        body = _replay_decoder.decode(await request.read())
    except msgspec.ValidationError as exc:
        raise Invalid(422, describe(exc)) from None
    except msgspec.DecodeError as exc:
        raise Invalid(400, ApiError(code="invalid_json", message=str(exc))) from None
    result = await ops.dlq_replay(db, streams, body.selection(), dry_run=body.dry_run)
    return _json(result)


@_ops_errors(400)
async def delete_dlq(request: web.Request) -> web.Response:
    """Purge one dead letter (the task stays dead, with its history)."""
    db, _ = _stores(request)
    task_id = _task_id(request)
    result = await ops.dlq_purge(db, DlqSelection(ids=[task_id]), dry_run=False)
    if result.count == 0:
        raise _not_found(f"task {task_id} is not in the dead letters")
    return _json(result)


@_ops_errors(400)
async def get_consumers(request: web.Request) -> web.Response:
    _, streams = _stores(request)
    return _json(await ops.consumers(streams))


ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/v1/queues", get_queues),
    ("GET", "/v1/queues/{priority}/pending", get_pending),
    ("GET", "/v1/tasks/{id}/history", get_task_history),
    ("GET", "/v1/dlq", list_dlq),
    ("POST", "/v1/dlq/replay", replay_dlq),
    ("DELETE", "/v1/dlq/{id}", delete_dlq),
    ("GET", "/v1/consumers", get_consumers),
]


def _stores(request: web.Request) -> tuple[Database, Streams]:
    # The app module imports this one to register the routes: import its keys late.
    from taskstream.services.ingest.app import DB, STREAMS

    return request.app[DB], request.app[STREAMS]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encode(body), status=status, content_type="application/json")


def _not_found(message: str) -> Invalid:
    return Invalid(404, ApiError(code="not_found", message=message))


def _task_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["id"])
    except ValueError:
        raise ops.BadRequest("not a task id", "id") from None


def _priority(value: str) -> str:
    if value not in PRIORITIES:
        raise ops.BadRequest(f"priority must be one of {', '.join(PRIORITIES)}", "priority")
    return value


def _int(q: Any, name: str, default: int) -> int:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ops.BadRequest(f"{name} must be an integer", name) from None


def _time(q: Any, name: str) -> dt.datetime | None:
    raw = q.get(name)
    if not raw:
        return None
    try:
        # An unencoded "+" of a UTC offset arrives as a space.
        value = dt.datetime.fromisoformat(raw.replace(" ", "+"))
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        message = f"{name} must be an ISO 8601 time with a zone, e.g. 2030-01-01T00:00:00Z"
        raise ops.BadRequest(message, name)
    return value
