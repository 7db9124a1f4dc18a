"""Schedules: create or replace (PUT, idempotent), read one (with its next and latest runs) or
all, pause (with a note), resume, trigger (run now), delete. Thin shells over
``shared.schedule_ops`` (the ``taskstream schedules`` commands call the same functions)."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from taskstream.services.ingest import auth, state
from taskstream.services.ingest.errors import Invalid, invalid, json_response, not_found
from taskstream.services.ingest.routes import Route
from taskstream.services.ingest.validate import describe
from taskstream.shared import schedule_ops
from taskstream.shared.schedule_models import Deleted, NoteRequest, ScheduleList, ScheduleView

_any = msgspec.json.Decoder()
_note = msgspec.json.Decoder(NoteRequest)
NAME = "/v1/schedules/{name}"


def _name(request: web.Request) -> str:
    """The stored name of the schedule the path names: the caller's tenant's (another
    tenant's schedule of the same name is another schedule, and never found here)."""
    name = request.match_info["name"]
    try:
        if "/" in name:  # an encoded slash must not reach another tenant's schedule
            raise schedule_ops.InvalidSchedule("a schedule name holds no /", "name")
        schedule_ops.check_name(name)
    except schedule_ops.InvalidSchedule as exc:
        raise invalid(400, str(exc), "name") from None
    return schedule_ops.stored_name(auth.principal(request).tenant, name)


def _shown(request: web.Request, view: ScheduleView) -> ScheduleView:
    """``view`` under the name its tenant knows it by (an admin seeing every tenant sees
    ``<tenant>/<name>`` for the others' schedules)."""
    if auth.principal(request).view is None:
        return view
    return msgspec.structs.replace(view, name=schedule_ops.shown_name(view.name))


async def _json(request: web.Request) -> Any:
    try:
        return _any.decode(await request.read())
    except msgspec.DecodeError as exc:
        raise invalid(400, str(exc), code="invalid_json") from None


async def _note_of(request: web.Request) -> str | None:
    body = await request.read()
    if not body.strip():
        return None
    try:
        return _note.decode(body).note
    except msgspec.ValidationError as exc:
        raise Invalid(422, describe(exc)) from None
    except msgspec.DecodeError as exc:
        raise invalid(400, str(exc), code="invalid_json") from None


async def put_schedule(request: web.Request) -> web.Response:
    name = _name(request)
    req = schedule_ops.parse_request(await _json(request))
    view = await schedule_ops.put(state.db(request), name, req, state.config(request).tasks)
    return json_response(_shown(request, view), 201 if view.change == "created" else 200)


async def get_schedule(request: web.Request) -> web.Response:
    view = await schedule_ops.get(state.db(request), _name(request))
    if view is None:
        raise not_found(f"no schedule {request.match_info['name']}")
    return json_response(_shown(request, view))


async def list_schedules(request: web.Request) -> web.Response:
    listed = await schedule_ops.list_all(state.db(request), auth.principal(request).view)
    return json_response(ScheduleList(schedules=[_shown(request, v) for v in listed.schedules]))


async def pause_schedule(request: web.Request) -> web.Response:
    name = _name(request)
    view = await schedule_ops.pause(state.db(request), name, await _note_of(request))
    if view is None:
        raise not_found(f"no schedule {request.match_info['name']}")
    return json_response(_shown(request, view))


async def resume_schedule(request: web.Request) -> web.Response:
    name = _name(request)
    view = await schedule_ops.resume(state.db(request), name, await _note_of(request))
    if view is None:
        raise not_found(f"no schedule {request.match_info['name']}")
    return json_response(_shown(request, view))


async def trigger_schedule(request: web.Request) -> web.Response:
    name = _name(request)
    # Published at once (a trigger is rare); if Redis refuses, the outbox row stays and the
    # watcher sends it: the answer is the same either way.
    publish = schedule_ops.stream_publisher(state.streams(request))
    result = await schedule_ops.trigger(
        state.db(request), name, state.config(request).tasks, publish
    )
    if result is None:
        raise not_found(f"no schedule {request.match_info['name']}")
    request.app[state.METRICS].schedule_runs.add(1, {"outcome": "triggered"})
    shown = request.match_info["name"]
    return json_response(msgspec.structs.replace(result, schedule=shown), 201)


async def delete_schedule(request: web.Request) -> web.Response:
    name = _name(request)
    if not await schedule_ops.delete(state.db(request), name):
        raise not_found(f"no schedule {request.match_info['name']}")
    return json_response(Deleted(deleted=request.match_info["name"]))


ROUTES: list[Route] = [
    ("GET", "/v1/schedules", list_schedules),
    ("PUT", NAME, put_schedule),
    ("GET", NAME, get_schedule),
    ("DELETE", NAME, delete_schedule),
    ("POST", NAME + "/pause", pause_schedule),
    ("POST", NAME + "/resume", resume_schedule),
    ("POST", NAME + "/trigger", trigger_schedule),
]
