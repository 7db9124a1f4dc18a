"""The workflows pages: the list by state (cursor pages, newest first), and one workflow drawn
as its DAG with each step's state (and the same as a table), with cancel. The same functions as
``/v1/workflows`` (the ``Database`` workflow family). Workflows are not kept per tenant yet, so
these pages, like those routes, need an admin."""

from __future__ import annotations

from aiohttp import web

from taskstream.services.ingest.console import dag, forms, render, state
from taskstream.services.ingest.console.errors import PageError, require
from taskstream.services.ingest.console.session import ADMIN
from taskstream.services.ingest.routes import ID, Route
from taskstream.shared.workflow_models import WORKFLOW_STATES, WorkflowView

PAGE = 50


async def workflows_page(request: web.Request) -> web.Response:
    require(request, ADMIN)
    q = request.query
    status = forms.choice(q, "state", WORKFLOW_STATES)
    views = await state.db(request).list_workflows(state=status, after=forms.cursor(q), limit=PAGE)
    query = {"state": status} if status else {}
    return render.page(
        request,
        "workflows.html",
        workflows=views,
        states=WORKFLOW_STATES,
        chosen=status or "",
        query=query,
        first_page=forms.cursor(q) is not None,
        next_cursor=str(views[-1].id) if len(views) == PAGE else None,
    )


async def workflow_page(request: web.Request) -> web.Response:
    require(request, ADMIN)
    return await _one(request)


async def _one(request: web.Request, notice: str | None = None) -> web.Response:
    view = await _get(request)
    steps = view.steps or []
    drawing = dag.layout([(s.name, s.depends_on, s.task.status, str(s.task.id)) for s in steps])
    return render.page(
        request,
        "workflow.html",
        w=view,
        steps=steps,
        drawing=drawing,
        node_w=dag.NODE_W,
        node_h=dag.NODE_H,
        notice=notice,
    )


async def _get(request: web.Request) -> WorkflowView:
    workflow_id = forms.task_id(request.match_info["id"])
    view = await state.db(request).get_workflow(workflow_id)
    if view is None:
        raise PageError(404, f"There is no workflow {workflow_id}.")
    return view


async def cancel(request: web.Request) -> web.Response:
    require(request, ADMIN)
    workflow_id = forms.task_id(request.match_info["id"])
    cancelled = await state.db(request).cancel_workflow(workflow_id)
    if cancelled is None:
        raise PageError(404, f"There is no workflow {workflow_id}.")
    n = len(cancelled)
    return await _one(request, f"Cancelled {n} step{'s' if n != 1 else ''} not yet started.")


ROUTES: list[Route] = [
    ("GET", "/workflows", workflows_page),
    ("GET", "/workflows/{id:" + ID + "}", workflow_page),
    ("POST", "/workflows/{id:" + ID + "}/cancel", cancel),
]
