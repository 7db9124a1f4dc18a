"""Tasks: submit one or a batch, read, list, cancel, and the Go scheduler's ``POST /tasks``.

A task is accepted once it is committed (group commit, ``committer.py``); its entry is
published after. A request that fails leaves nothing half-written: each request's rows go in
one statement.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import msgspec
from aiohttp import web
from opentelemetry.trace import Span, SpanKind

from taskstream.services.ingest import auth, params, state
from taskstream.services.ingest.errors import Invalid, error_response, json_response, not_found
from taskstream.services.ingest.routes import ID, Route
from taskstream.services.ingest.validate import convert_task, decode_go_task, decode_task, new_task
from taskstream.shared import tracing
from taskstream.shared.domain import PRIORITIES, STATUSES, InsertResult, NewTask, Task
from taskstream.shared.domain.access import TenantLimits
from taskstream.shared.errors import QuotaExceeded
from taskstream.shared.models import ApiError, BatchRequest, TaskList, TaskRequest

_batch_decoder = msgspec.json.Decoder(BatchRequest)


class _ValidBatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tasks: list[TaskRequest]


# The usual batch is valid throughout: one typed decode does it all in C. Only when it is not
# is the batch taken apart element by element, each with its own error.
_valid_batch_decoder = msgspec.json.Decoder(_ValidBatch)


def _enqueue_span(request: web.Request) -> AbstractContextManager[Span]:
    """The request's span: a child of the caller's ``traceparent`` header when it sent one;
    the tasks it creates carry this span's context to the executor."""
    parent = tracing.context_from(request.headers.get("traceparent"))
    return tracing.tracer().start_as_current_span(
        "task.enqueue", context=parent, kind=SpanKind.SERVER
    )


async def create_task(request: web.Request) -> web.Response:
    """201 with the new task; 200 with the original (the same idempotency key and body) or,
    with ``"duplicate": true``, with the task holding its unique identity."""
    body = decode_task(await request.read())
    view, created, duplicate, headers = await _create_one(request, body)
    if duplicate:
        return json_response({**msgspec.structs.asdict(view), "duplicate": True}, 200, headers)
    return json_response(view, 201 if created else 200, headers)


async def create_go_task(request: web.Request) -> web.Response:
    """The Go scheduler's ``POST /tasks``: 202 queued, or 200 duplicate."""
    body = decode_go_task(await request.read())
    view, created, _, headers = await _create_one(request, body)
    if created:
        return json_response({"task_id": str(view.id), "status": "queued"}, 202, headers)
    return json_response({"task_id": str(view.id), "status": "duplicate"}, 200, headers)


async def _create_one(
    request: web.Request, req: TaskRequest
) -> tuple[Task, bool, bool, dict[str, str] | None]:
    with _enqueue_span(request) as span:
        tenant = auth.principal(request).tenant
        task = new_task(
            req, state.config(request), trace_context=tracing.current_traceparent(), tenant=tenant
        )
        span.set_attribute("taskstream.task.id", str(task.id))
        limiter = state.limiter(request)
        limits = await limiter.of(tenant)
        headers = None
        if limits is None:  # the usual case: no limits, nothing more to pay
            result = await state.committer(request).insert([task])
        else:
            error = limiter.payload_error(limits, task)
            if error is not None:
                raise error
            headers = await limiter.admit(limits, 1)
            result = await _insert_limited(request, limits, [task])
    view, created, duplicate = _result_of(task, result)
    return view, created, duplicate, headers


async def _insert_limited(
    request: web.Request, limits: TenantLimits, tasks: list[NewTask]
) -> InsertResult:
    """Commit the tasks of a tenant with limits: through its in-flight quota when it has one."""
    committer = state.committer(request)
    if limits.max_in_flight is None:
        return await committer.insert(tasks)
    try:
        return await committer.insert_counted(tasks, limits.name, limits.max_in_flight)
    except QuotaExceeded as exc:
        raise state.limiter(request).quota_error(exc) from None


async def create_batch(request: web.Request) -> web.Response:
    config = state.config(request)
    body = await request.read()
    results: list[Any]
    try:
        requests: list[Any] = list(_valid_batch_decoder.decode(body).tasks)
        valid = True
    except msgspec.ValidationError:
        requests, valid = _decode_batch(body).tasks, False
    except msgspec.DecodeError as exc:
        raise Invalid(400, ApiError(code="invalid_json", message=str(exc))) from None
    limit = config.ingest.batch_max_tasks
    if len(requests) > limit:
        return error_response(413, "batch_too_large", f"at most {limit} tasks per batch", "tasks")
    results = [None] * len(requests)
    tasks: list[tuple[int, NewTask]] = []
    tenant = auth.principal(request).tenant
    limiter = state.limiter(request)
    limits = await limiter.of(tenant)
    headers = None
    with _enqueue_span(request) as span:
        trace_context = tracing.current_traceparent()
        for i, item in enumerate(requests):
            try:
                req = item if valid else convert_task(item)
                task = new_task(req, config, trace_context=trace_context, tenant=tenant)
                if limits is not None and (error := limiter.payload_error(limits, task)):
                    raise error
                tasks.append((i, task))
            except Invalid as exc:
                results[i] = {"error": _in_batch(exc.error, i)}
        span.set_attribute("taskstream.batch.size", len(tasks))
        if limits is None:
            result = await state.committer(request).insert([t for _, t in tasks])
        else:  # the batch's tasks are admitted together or refused together
            headers = await limiter.admit(limits, len(tasks))
            result = await _insert_limited(request, limits, [t for _, t in tasks])
    for i, task in tasks:
        try:
            view, created, duplicate = _result_of(task, result)
            results[i] = {"id": view.id, "status": view.status, "created": created, "task": view}
            if duplicate:
                results[i]["duplicate"] = True
        except Invalid as exc:
            results[i] = {"error": _in_batch(exc.error, i)}
    return json_response({"results": results}, headers=headers)


def _decode_batch(body: bytes) -> BatchRequest:
    try:
        return _batch_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise Invalid(422, ApiError(code="invalid", message=str(exc), field="tasks")) from None


def _in_batch(error: ApiError, i: int) -> ApiError:
    """``error`` of the batch's task ``i``, its field named ``tasks[i].<field>``."""
    field = f"tasks[{i}].{error.field}" if error.field else f"tasks[{i}]"
    return msgspec.structs.replace(error, field=field)


def _result_of(task: NewTask, result: InsertResult) -> tuple[Task, bool, bool]:
    """The view of one requested task, whether it was created by this request, and whether
    it is the task holding the request's unique identity (a duplicate)."""
    if task.id in result.inserted:
        return result.inserted[task.id], True, False
    if task.id in result.rejected:
        raise Invalid(422, ApiError(code="invalid", message=result.rejected[task.id]))
    if task.id in result.duplicates:
        return result.duplicates[task.id], False, True
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
    return view, False, False


async def get_task(request: web.Request) -> web.Response:
    """One task; with ``?wait=S``, answered as soon as it has ended (succeeded, dead or
    cancelled), or as it stands after S seconds (``waiters.py``: no polling)."""
    task_id = params.task_id(request)
    tenant = auth.principal(request).view
    wait = params.wait_seconds(request.query)
    if wait is None:
        view = await state.db(request).get_task(task_id, tenant)
    else:
        view = await state.waiters(request).wait(task_id, wait, tenant)
    if view is None:  # another tenant's task is no task at all to this one
        raise not_found(f"no task {task_id}")
    return json_response(view)


async def list_tasks(request: web.Request) -> web.Response:
    q = request.query
    limit = params.integer(q, "limit", 50, 1, 500)
    views = await state.db(request).list_tasks(
        status=params.choice(q, "status", STATUSES),
        type=params.text(q, "type"),
        priority=params.choice(q, "priority", PRIORITIES),
        after=params.uuid_cursor(q),
        limit=limit,
        tenant=auth.principal(request).view,
    )
    last = views[-1] if len(views) == limit else None
    cursor = str(last.id) if last else None  # ids are time-ordered: the id is the position
    return json_response(TaskList(tasks=views, next_cursor=cursor))


async def cancel_task(request: web.Request) -> web.Response:
    task_id = params.task_id(request)
    db = state.db(request)
    tenant = auth.principal(request).view
    view = await db.cancel_task(task_id, tenant)
    if view is not None:
        return json_response(view)
    current = await db.get_task(task_id, tenant)
    if current is None:
        raise not_found(f"no task {task_id}")
    return error_response(
        409, "not_cancellable", f"task {task_id} is {current.status} and cannot be cancelled"
    )


ROUTES: list[Route] = [
    ("POST", "/v1/tasks", create_task),
    ("POST", "/v1/tasks/batch", create_batch),
    ("GET", "/v1/tasks", list_tasks),
    ("GET", "/v1/tasks/{id:" + ID + "}", get_task),
    ("POST", "/v1/tasks/{id:" + ID + "}/cancel", cancel_task),
    ("POST", "/tasks", create_go_task),
]
