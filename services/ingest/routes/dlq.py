"""Dead letters: list (filtered, cursor pages), replay (ids, a filter, or all; dry run on
request) and purge one. Thin shells over ``shared.ops``, like the CLI's ``dlq`` commands."""

from __future__ import annotations

import msgspec
from aiohttp import web

from taskstream.services.ingest import auth, params, state
from taskstream.services.ingest.errors import Invalid, invalid, json_response, not_found
from taskstream.services.ingest.routes import ID, Route
from taskstream.services.ingest.validate import describe
from taskstream.shared import ops
from taskstream.shared.ops_models import DlqFilter, DlqSelection, ReplayRequest

_replay_decoder = msgspec.json.Decoder(ReplayRequest)


async def list_dlq(request: web.Request) -> web.Response:
    q = request.query
    where = DlqFilter(
        priority=params.priority(q["priority"]) if q.get("priority") else None,  # type: ignore[arg-type]
        type=params.text(q, "type"),
        reason=params.text(q, "reason"),
        error=params.text(q, "error"),
        since=params.time(q, "since"),
        until=params.time(q, "until"),
    )
    limit = params.integer(q, "limit", 50, 1, ops.DLQ_PAGE_MAX)
    page = await ops.dlq_list(
        state.db(request),
        where,
        cursor=q.get("cursor") or None,
        limit=limit,
        tenant=auth.principal(request).view,
    )
    return json_response(page)


async def replay_dlq(request: web.Request) -> web.Response:
    """Replay dead letters; ``dry_run`` defaults to false here (the CLI dry-runs first)."""
    try:
        body = _replay_decoder.decode(await request.read())
    except msgspec.ValidationError as exc:
        raise Invalid(422, describe(exc)) from None
    except msgspec.DecodeError as exc:
        raise invalid(400, str(exc), code="invalid_json") from None
    try:
        selection = body.selection()
        ops.check_selection(selection)
    except ops.BadRequest as exc:  # the body names a selection that makes no sense
        raise invalid(422, str(exc), exc.field) from None
    db, streams = state.db(request), state.streams(request)
    tenant = auth.principal(request).view
    result = await ops.dlq_replay(db, streams, selection, dry_run=body.dry_run, tenant=tenant)
    return json_response(result)


async def delete_dlq(request: web.Request) -> web.Response:
    """Purge one dead letter (the task stays dead, with its history)."""
    task_id = params.task_id(request)
    result = await ops.dlq_purge(
        state.db(request),
        DlqSelection(ids=[task_id]),
        dry_run=False,
        tenant=auth.principal(request).view,
    )
    if result.count == 0:
        raise not_found(f"task {task_id} is not in the dead letters")
    return json_response(result)


ROUTES: list[Route] = [
    ("GET", "/v1/dlq", list_dlq),
    ("POST", "/v1/dlq/replay", replay_dlq),
    ("DELETE", "/v1/dlq/{id:" + ID + "}", delete_dlq),
]
