"""Workflows: submit one whole (validated whole: a bad step, an unknown dependency or a cycle
is a 422 naming the steps, and nothing is written), read one with its steps, list them by
state, cancel every step not yet started. The steps are tasks: the task routes show them too.
"""

from __future__ import annotations

import uuid

import msgspec
from aiohttp import web

from taskstream.services.ingest import params, state
from taskstream.services.ingest.errors import Invalid, error_response, json_response, not_found
from taskstream.services.ingest.routes import ID, Route
from taskstream.services.ingest.validate import invalid
from taskstream.shared import tracing, workflow_ops
from taskstream.shared.models import ApiError
from taskstream.shared.submit import SubmitError
from taskstream.shared.workflow_models import (
    WORKFLOW_STATES,
    CancelledWorkflow,
    WorkflowList,
    WorkflowView,
)

_any = msgspec.json.Decoder()


async def create_workflow(request: web.Request) -> web.Response:
    """201 with the workflow and its steps' task ids; 200 with the original for a repeated
    idempotency key and the same body, 409 for another body."""
    try:
        body = _any.decode(await request.read())
    except msgspec.DecodeError as exc:
        raise Invalid(400, ApiError(code="invalid_json", message=str(exc))) from None
    config = state.config(request)
    try:
        plan = workflow_ops.plan(
            body,
            config.tasks,
            max_steps=config.ingest.workflow_max_steps,
            trace_context=tracing.current_traceparent(),
        )
    except SubmitError as exc:
        raise invalid(exc) from None
    db = state.db(request)
    workflow_id, created, same = await db.insert_workflow(plan)
    if not same:
        return error_response(
            409,
            "idempotency_conflict",
            "this idempotency key was used with a different workflow",
            "idempotency_key",
        )
    if created:
        request.app[state.METRICS].workflows_started.add(1)
    view = await _found(request, workflow_id)
    return json_response(view, 201 if created else 200)


async def _found(request: web.Request, workflow_id: uuid.UUID) -> WorkflowView:
    view = await state.db(request).get_workflow(workflow_id)
    if view is None:
        raise not_found(f"no workflow {workflow_id}")
    return view


async def get_workflow(request: web.Request) -> web.Response:
    return json_response(await _found(request, params.task_id(request)))


async def list_workflows(request: web.Request) -> web.Response:
    q = request.query
    limit = params.integer(q, "limit", 50, 1, 500)
    views = await state.db(request).list_workflows(
        state=params.choice(q, "status", WORKFLOW_STATES),
        after=params.uuid_cursor(q),
        limit=limit,
    )
    last = views[-1] if len(views) == limit else None
    return json_response(WorkflowList(workflows=views, next_cursor=str(last.id) if last else None))


async def cancel_workflow(request: web.Request) -> web.Response:
    """Cancel every step not yet started (running ones finish; their children are cancelled
    already); 404 for no such workflow. Cancelling again cancels nothing more."""
    workflow_id = params.task_id(request)
    db = state.db(request)
    cancelled = await db.cancel_workflow(workflow_id)
    if cancelled is None:
        raise not_found(f"no workflow {workflow_id}")
    view = await _found(request, workflow_id)
    if cancelled:
        ended = await db.count_finished_workflows(cancelled)
        for outcome in ended:
            request.app[state.METRICS].workflows_finished.add(1, {"outcome": outcome})
    return json_response(CancelledWorkflow(cancelled=cancelled, workflow=view))


ROUTES: list[Route] = [
    ("POST", "/v1/workflows", create_workflow),
    ("GET", "/v1/workflows", list_workflows),
    ("GET", "/v1/workflows/{id:" + ID + "}", get_workflow),
    ("POST", "/v1/workflows/{id:" + ID + "}/cancel", cancel_workflow),
]
