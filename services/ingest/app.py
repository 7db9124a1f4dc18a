"""The ingest HTTP API: validate (msgspec) → commit in Postgres (asyncpg) → XADD.

A task is accepted once it is committed; the entry is published after. Errors are JSON
``{"error": {"code", "message", "field"?}}`` with the right status, and a request that fails
leaves nothing half-written (each request's rows go in one transaction).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any

import msgspec
from aiohttp import web
from opentelemetry.trace import Span, SpanKind

from taskstream.services.ingest import openapi, ops_routes
from taskstream.services.ingest.committer import GroupCommit
from taskstream.services.ingest.publisher import Publisher
from taskstream.services.ingest.validate import (
    Invalid,
    convert_task,
    decode_go_task,
    decode_task,
    new_task,
)
from taskstream.shared import metrics as metrics_mod
from taskstream.shared import tracing
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.domain import PRIORITIES, STATUSES, InsertResult, NewTask, Task
from taskstream.shared.errors import StoreUnavailable
from taskstream.shared.metrics import Metrics
from taskstream.shared.models import ApiError, BatchRequest, ErrorBody, TaskList, TaskRequest
from taskstream.shared.streams import Streams

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
_batch_decoder = msgspec.json.Decoder(BatchRequest)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CONFIG: web.AppKey[Config] = web.AppKey("config", Config)
DB: web.AppKey[Database] = web.AppKey("db", Database)
STREAMS: web.AppKey[Streams] = web.AppKey("streams", Streams)
PUBLISHER: web.AppKey[Publisher] = web.AppKey("publisher", Publisher)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
COMMITTER: web.AppKey[GroupCommit] = web.AppKey("committer", GroupCommit)


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_encode(body), status=status, content_type="application/json", headers=headers
    )


def error_response(
    status: int, code: str, message: str, field: str | None = None, **headers: str
) -> web.Response:
    body = ErrorBody(error=ApiError(code=code, message=message, field=field))
    return json_response(body, status, headers or None)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Invalid as exc:
        return json_response(ErrorBody(error=exc.error), exc.status)
    except StoreUnavailable as exc:
        log.warning("store unavailable: %s", exc, extra={"event": "ingest.unavailable"})
        return error_response(503, "unavailable", str(exc), **{"Retry-After": "1"})
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(413, "too_large", exc.text or "request body too large")
    except web.HTTPException as exc:
        if exc.content_type == "application/json":
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
        return error_response(exc.status, code, exc.reason)
    except Exception:
        log.exception("unhandled error", extra={"event": "ingest.error"})
        return error_response(500, "internal", "internal error")


def _enqueue_span(request: web.Request) -> AbstractContextManager[Span]:
    """The request's span: a child of the caller's ``traceparent`` header when it sent one;
    the tasks it creates carry this span's context to the executor."""
    parent = tracing.context_from(request.headers.get("traceparent"))
    return tracing.tracer().start_as_current_span(
        "task.enqueue", context=parent, kind=SpanKind.SERVER
    )


async def create_task(request: web.Request) -> web.Response:
    view, created = await _create_one(request, decode_task(await request.read()))
    return json_response(view, 201 if created else 200)


async def create_go_task(request: web.Request) -> web.Response:
    """The Go scheduler's ``POST /tasks``: 202 queued, or 200 duplicate."""
    view, created = await _create_one(request, decode_go_task(await request.read()))
    if created:
        return json_response({"task_id": str(view.id), "status": "queued"}, 202)
    return json_response({"task_id": str(view.id), "status": "duplicate"}, 200)


async def _create_one(request: web.Request, req: TaskRequest) -> tuple[Task, bool]:
    with _enqueue_span(request) as span:
        task = new_task(req, request.app[CONFIG], trace_context=tracing.current_traceparent())
        span.set_attribute("taskstream.task.id", str(task.id))
        result = await _insert(request.app, [task])
    return _result_of(task, result)


async def create_batch(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    try:
        batch = _batch_decoder.decode(await request.read())
    except msgspec.ValidationError as exc:
        raise Invalid(422, ApiError(code="invalid", message=str(exc), field="tasks")) from None
    except msgspec.DecodeError as exc:
        raise Invalid(400, ApiError(code="invalid_json", message=str(exc))) from None
    if len(batch.tasks) > config.ingest.batch_max_tasks:
        return error_response(
            413,
            "batch_too_large",
            f"at most {config.ingest.batch_max_tasks} tasks per batch",
            "tasks",
        )
    results: list[Any] = [None] * len(batch.tasks)
    tasks: list[tuple[int, NewTask]] = []
    with _enqueue_span(request) as span:
        trace_context = tracing.current_traceparent()
        for i, item in enumerate(batch.tasks):
            try:
                tasks.append((i, new_task(convert_task(item), config, trace_context=trace_context)))
            except Invalid as exc:
                results[i] = {"error": _in_batch(exc.error, i)}
        span.set_attribute("taskstream.batch.size", len(tasks))
        result = await _insert(request.app, [t for _, t in tasks])
    for i, task in tasks:
        try:
            view, created = _result_of(task, result)
            results[i] = {"id": view.id, "status": view.status, "created": created, "task": view}
        except Invalid as exc:
            results[i] = {"error": _in_batch(exc.error, i)}
    return json_response({"results": results})


def _in_batch(error: ApiError, i: int) -> ApiError:
    """``error`` of the batch's task ``i``, its field named ``tasks[i].<field>``."""
    field = f"tasks[{i}].{error.field}" if error.field else f"tasks[{i}]"
    return msgspec.structs.replace(error, field=field)


async def get_task(request: web.Request) -> web.Response:
    task_id = _task_id(request)
    view = await request.app[DB].get_task(task_id)
    if view is None:
        return error_response(404, "not_found", f"no task {task_id}")
    return json_response(view)


async def list_tasks(request: web.Request) -> web.Response:
    q = request.query
    status = _choice(q, "status", STATUSES)
    priority = _choice(q, "priority", PRIORITIES)
    limit = _int(q, "limit", 50, 1, 500)
    after = _decode_cursor(q["cursor"]) if q.get("cursor") else None
    views = await request.app[DB].list_tasks(
        status=status, type=q.get("type") or None, priority=priority, after=after, limit=limit
    )
    last = views[-1] if len(views) == limit else None
    cursor = str(last.id) if last else None  # ids are time-ordered: the id is the position
    return json_response(TaskList(tasks=views, next_cursor=cursor))


async def cancel_task(request: web.Request) -> web.Response:
    task_id = _task_id(request)
    db = request.app[DB]
    view = await db.cancel_task(task_id)
    if view is not None:
        return json_response(view)
    current = await db.get_task(task_id)
    if current is None:
        return error_response(404, "not_found", f"no task {task_id}")
    return error_response(
        409, "not_cancellable", f"task {task_id} is {current.status} and cannot be cancelled"
    )


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    for name, ping in (("postgres", request.app[DB].ping), ("redis", request.app[STREAMS].ping)):
        try:
            await ping()
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"unavailable: {exc}"
    ok = all(v == "ok" for v in checks.values())
    return json_response(
        {"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503
    )


async def metrics_route(request: web.Request) -> web.Response:
    return web.Response(body=metrics_mod.prometheus_text(), content_type="text/plain")


async def openapi_route(request: web.Request) -> web.Response:
    return json_response(openapi.spec())


async def _insert(app: web.Application, tasks: list[NewTask]) -> InsertResult:
    return await app[COMMITTER].insert(tasks)


def _result_of(task: NewTask, result: InsertResult) -> tuple[Task, bool]:
    """The view of one requested task, and whether it was created by this request."""
    if task.id in result.inserted:
        return result.inserted[task.id], True
    view, same = result.existing[task.id]
    if not same:
        raise Invalid(
            409,
            ApiError(
                code="idempotency_conflict",
                message="this idempotency key was used with a different request body",
                field="idempotency_key",
            ),
        )
    return view, False


def _task_id(request: web.Request) -> uuid.UUID:
    raw = request.match_info["id"]
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise Invalid(400, ApiError(code="invalid", message="not a task id", field="id")) from None


def _choice(q: Any, name: str, allowed: tuple[str, ...]) -> str | None:
    value = q.get(name) or None
    if value is not None and value not in allowed:
        message = f"{name} must be one of {', '.join(allowed)}"
        raise Invalid(400, ApiError(code="invalid", message=message, field=name))
    return value


def _int(q: Any, name: str, default: int, low: int, high: int) -> int:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        message = f"{name} must be an integer from {low} to {high}"
        raise Invalid(400, ApiError(code="invalid", message=message, field=name))
    return value


def _decode_cursor(cursor: str) -> uuid.UUID:
    try:
        return uuid.UUID(cursor)
    except ValueError:
        raise Invalid(400, ApiError(code="invalid", message="bad cursor", field="cursor")) from None


ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", "/v1/tasks", create_task),
    ("POST", "/v1/tasks/batch", create_batch),
    ("GET", "/v1/tasks", list_tasks),
    ("GET", "/v1/tasks/{id}", get_task),
    ("POST", "/v1/tasks/{id}/cancel", cancel_task),
    ("POST", "/tasks", create_go_task),
    ("GET", "/healthz", healthz),
    ("GET", "/readyz", readyz),
    ("GET", "/metrics", metrics_route),
    ("GET", "/openapi.json", openapi_route),
    *ops_routes.ROUTES,
]


def build_app(
    config: Config, db: Database, streams: Streams, metrics: Metrics, publisher: Publisher
) -> web.Application:
    app = web.Application(
        middlewares=[errors_middleware], client_max_size=config.ingest.max_body_bytes
    )
    app[CONFIG] = config
    app[DB] = db
    app[STREAMS] = streams
    app[METRICS] = metrics
    app[PUBLISHER] = publisher
    app[COMMITTER] = GroupCommit(db, publisher, metrics)
    app.on_cleanup.append(_close_committer)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    return app


async def _close_committer(app: web.Application) -> None:
    await app[COMMITTER].close()
