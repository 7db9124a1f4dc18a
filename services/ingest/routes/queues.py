"""Operator views of the queues: per priority figures, pending entries (XPENDING joined with
their tasks), consumers, and one task's whole history. Thin shells over ``shared.ops`` (the CLI
calls the same functions), so the HTTP bodies and ``taskstream … --json`` are the same."""

from __future__ import annotations

from aiohttp import web

from taskstream.services.ingest import auth, params, state
from taskstream.services.ingest.errors import json_response, not_found
from taskstream.services.ingest.routes import ID, Route
from taskstream.shared import ops

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


ROUTES: list[Route] = [
    ("GET", "/v1/queues", get_queues),
    ("GET", "/v1/queues/{priority}/pending", get_pending),
    ("GET", "/v1/tasks/{id:" + ID + "}/history", get_task_history),
    ("GET", "/v1/consumers", get_consumers),
]
