"""The routes of the systems this project replaces, behind the same bearer auth as the rest
(the seed that had them took JWTs): ``POST /addJob`` (the Go scheduler's task body, answered
as ``POST /tasks`` answers it) and ``GET /failedJobs?page=&limit=`` (the dead letters in
numbered pages, newest first). ``POST /tasks`` itself lives with the task routes."""

from __future__ import annotations

from aiohttp import web

from taskstream.services.ingest import auth, params, state
from taskstream.services.ingest.errors import invalid, json_response
from taskstream.services.ingest.routes import Route
from taskstream.services.ingest.routes.tasks import create_go_task
from taskstream.shared.ops_models import FailedJobs

PAGE_MAX = 100
DEPTH_MAX = 100_000  # deepest row a numbered page may reach (OFFSET reads what it skips)


async def add_job(request: web.Request) -> web.Response:
    return await create_go_task(request)


async def failed_jobs(request: web.Request) -> web.Response:
    q = request.query
    limit = params.integer(q, "limit", 20, 1, PAGE_MAX)
    page = params.integer(q, "page", 1, 1, DEPTH_MAX)
    offset = (page - 1) * limit
    if offset + limit > DEPTH_MAX:
        raise invalid(400, f"page * limit must be at most {DEPTH_MAX}", "page")
    rows = await state.db(request).page_dead_letters(
        offset=offset, limit=limit + 1, tenant=auth.principal(request).view
    )
    body = FailedJobs(jobs=rows[:limit], page=page, limit=limit, has_more=len(rows) > limit)
    return json_response(body)


ROUTES: list[Route] = [
    ("POST", "/addJob", add_job),
    ("GET", "/failedJobs", failed_jobs),
]
