"""Operator views of the queues: per priority figures, pending entries (XPENDING joined with
their tasks), consumers, one task's whole history, and pausing or resuming a queue (a
priority or a task type). Thin shells over ``shared.ops`` and ``shared.schedule_ops`` (the CLI
calls the same functions), so the HTTP bodies and ``taskstream … --json`` are the same."""

from __future__ import annotations

import msgspec
from aiohttp import web

from taskstream.services.ingest import auth, params, state
from taskstream.services.ingest.errors import Invalid, invalid, json_response, not_found
from taskstream.services.ingest.routes import ID, Route
from taskstream.services.ingest.validate import describe
from taskstream.shared import ops, schedule_ops
from taskstream.shared.schedule_models import QueuePauseRequest

_pause_decoder = msgspec.json.Decoder(QueuePauseRequest)

_YEAR_MS = 365 * 24 * 3_600_000


async def get_queues(request: web.Request) -> web.Response:
    return json_response(await ops.queues(state.db(request), state.streams(request)))


async def get_pending(request: web.Request) -> web.Response:
    q = request.query
    result = await ops.pending(
        state.db(request),
        state.streams(request),
        priority=params.priority(request.match_info["priority"]),
        consumer=params.text(q, "consumer"),
        min_idle_ms=params.integer(q, "min_idle_ms", 0, 0, _YEAR_MS),
        limit=params.integer(q, "limit", 50, 1, ops.PENDING_MAX),
        tenant=auth.principal(request).view,
    )
    return json_response(result)


async def get_task_history(request: web.Request) -> web.Response:
    task_id = params.task_id(request)
    history = await ops.task_history(
        state.db(request), state.streams(request), task_id, auth.principal(request).view
    )
    if history is None:
        raise not_found(f"no task {task_id}")
    return json_response(history)


async def get_consumers(request: web.Request) -> web.Response:
    return json_response(await ops.consumers(state.streams(request)))


async def _pause_request(request: web.Request) -> QueuePauseRequest:
    try:
        return _pause_decoder.decode(await request.read())
    except msgspec.ValidationError as exc:
        raise Invalid(422, describe(exc)) from None
    except msgspec.DecodeError as exc:
        raise invalid(400, str(exc), code="invalid_json") from None


async def pause_queue(request: web.Request) -> web.Response:
    """Pause a priority or a task type cluster-wide (``{"priority"|"type", "note"?}``)."""
    req = await _pause_request(request)
    return json_response(await schedule_ops.pause_queue(state.db(request), req))


async def resume_queue(request: web.Request) -> web.Response:
    req = await _pause_request(request)
    return json_response(await schedule_ops.resume_queue(state.db(request), req))


async def get_pauses(request: web.Request) -> web.Response:
    return json_response(await schedule_ops.pauses(state.db(request)))


ROUTES: list[Route] = [
    ("GET", "/v1/queues", get_queues),
    ("POST", "/v1/queues/pause", pause_queue),
    ("POST", "/v1/queues/resume", resume_queue),
    ("GET", "/v1/queues/pauses", get_pauses),
    ("GET", "/v1/queues/{priority}/pending", get_pending),
    ("GET", "/v1/tasks/{id:" + ID + "}/history", get_task_history),
    ("GET", "/v1/consumers", get_consumers),
]
