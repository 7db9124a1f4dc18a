"""The tasks pages: a filtered list in cursor pages (status, type, priority, creation time),
lookup by id or idempotency key, and one task with the timeline of its attempts, its pending
entry, its dead letter, its payload on request, and cancel.

The list is ``GET /v1/tasks``'s query (newest first by the time-ordered id, the id as the
cursor; a time range is a range of the primary key), never a count. A filter on status, type
or priority (none of them indexed, so claims and completions stay HOT updates) looks at no
more than ``SCAN`` tasks per page and then offers to look further back, so a filter that
rarely matches costs a bounded walk rather than the whole table.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from aiohttp import web

from taskstream.services.ingest.console import forms, render, state
from taskstream.services.ingest.console.errors import PageError, require
from taskstream.services.ingest.console.session import WRITE
from taskstream.services.ingest.routes import ID, Route
from taskstream.shared import ids, ops
from taskstream.shared.domain import PRIORITIES, STATUSES

PAGE = 50
SCAN = 50_000  # tasks one filtered page looks at, at most (then it offers to look further)


async def task_list(request: web.Request) -> web.StreamResponse:
    q = request.query
    tenant = state.tenant(request)
    if tenant is None:  # an admin (or auth off) may look at one tenant
        tenant = forms.text(q, "tenant")
    lookup = forms.text(q, "lookup")
    if lookup is not None:
        found = await ops.find_task(state.db(request), lookup, tenant)
        if found is not None:
            return web.Response(status=303, headers={"Location": f"/ui/tasks/{found}"})
    status = forms.choice(q, "status", STATUSES)
    priority = forms.choice(q, "priority", PRIORITIES)
    type_ = forms.text(q, "type")
    since, until = forms.time(q, "since"), forms.time(q, "until")
    after = forms.cursor(q)
    if until is not None:
        bound = ids.floor(_ms(until))
        after = bound if after is None or bound < after else after
    lower = ids.floor(_ms(since)) if since is not None else None
    db, further = state.db(request), None
    if status is None and type_ is None and priority is None:
        tasks = await db.list_tasks(
            status=None,
            type=None,
            priority=None,
            after=after,
            limit=PAGE,
            since=lower,
            tenant=tenant,
        )
    else:  # no index on these columns: each page walks a bounded stretch of the key
        tasks, further = await db.list_tasks_bounded(
            status=status,
            type=type_,
            priority=priority,
            after=after,
            limit=PAGE,
            since=lower,
            scan=SCAN,
            tenant=tenant,
        )
    filters = {
        "status": status or "",
        "type": type_ or "",
        "priority": priority or "",
        "since": forms.local(since),
        "until": forms.local(until),
        "tenant": (tenant or "") if state.tenant(request) is None else "",
    }
    shown = {k: v for k, v in filters.items() if v}
    return render.page(
        request,
        "tasks.html",
        tasks=tasks,
        filters=filters,
        statuses=STATUSES,
        priorities=PRIORITIES,
        lookup=lookup or "",
        not_found=lookup is not None,
        first_page=forms.cursor(q) is not None,
        query=shown,
        next_cursor=str(tasks[-1].id) if len(tasks) == PAGE else None,
        further=str(further) if further is not None else None,
        scan=SCAN,
    )


async def task_page(request: web.Request) -> web.Response:
    task_id = forms.task_id(request.match_info["id"])
    return await _task(request, task_id, show_payload=request.query.get("show") == "payload")


async def _task(
    request: web.Request,
    task_id: uuid.UUID,
    *,
    show_payload: bool = False,
    notice: str | None = None,
    status: int = 200,
) -> web.Response:
    history = await ops.task_history(
        state.db(request), state.streams(request), task_id, state.tenant(request)
    )
    if history is None:
        raise PageError(404, f"There is no task {task_id}.")
    timeline: list[Any] = list(history.attempts)
    if history.latest is not None:
        timeline.append(history.latest)
    return render.page(
        request,
        "task.html",
        status,
        history=history,
        task=history.task,
        timeline=timeline,
        show_payload=show_payload,
        cancellable=history.task.status in ("scheduled", "queued", "retrying"),
        notice=notice,
    )


async def payload(request: web.Request) -> web.Response:
    """The payload, for htmx to put in place (the page itself shows it with ?show=payload)."""
    task_id = forms.task_id(request.match_info["id"])
    task = await state.db(request).get_task(task_id, state.tenant(request))
    if task is None:
        raise PageError(404, f"There is no task {task_id}.")
    return render.page(request, "payload.html", task=task)


async def cancel(request: web.Request) -> web.Response:
    require(request, WRITE)
    task_id = forms.task_id(request.match_info["id"])
    db, tenant = state.db(request), state.tenant(request)
    done = await db.cancel_task(task_id, tenant)
    if done is not None:
        return await _task(request, task_id, notice="Cancelled.")
    current = await db.get_task(task_id, tenant)
    if current is None:
        raise PageError(404, f"There is no task {task_id}.")
    return await _task(
        request,
        task_id,
        notice=f"Not cancelled: the task is {current.status}.",
        status=409,
    )


def _ms(at: dt.datetime) -> int:
    return int(at.timestamp() * 1000)


ROUTES: list[Route] = [
    ("GET", "/tasks", task_list),
    ("GET", "/tasks/{id:" + ID + "}", task_page),
    ("GET", "/tasks/{id:" + ID + "}/payload", payload),
    ("POST", "/tasks/{id:" + ID + "}/cancel", cancel),
]
