"""Schedules: create or replace (PUT, idempotent), read one (with its next and latest runs) or
all, pause (with a note), resume, trigger (run now), delete. Thin shells over
``shared.schedule_ops`` (the ``taskstream schedules`` commands call the same functions)."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from taskstream.services.ingest import state
from taskstream.services.ingest.errors import Invalid, invalid, json_response, not_found
from taskstream.services.ingest.routes import Route
from taskstream.services.ingest.validate import describe
from taskstream.shared import schedule_ops
from taskstream.shared.schedule_models import Deleted, NoteRequest

_any = msgspec.json.Decoder()
_note = msgspec.json.Decoder(NoteRequest)
NAME = "/v1/schedules/{name}"


def _name(request: web.Request) -> str:
    try:
        return schedule_ops.check_name(request.match_info["name"])
    except schedule_ops.InvalidSchedule as exc:
        raise invalid(400, str(exc), "name") from None


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
    return json_response(view, 201 if view.change == "created" else 200)


async def get_schedule(request: web.Request) -> web.Response:
    view = await schedule_ops.get(state.db(request), _name(request))
    if view is None:
        raise not_found(f"no schedule {request.match_info['name']}")
    return json_response(view)


async def list_schedules(request: web.Request) -> web.Response:
    return json_response(await schedule_ops.list_all(state.db(request)))


async def pause_schedule(request: web.Request) -> web.Response:
    name = _name(request)
    view = await schedule_ops.pause(state.db(request), name, await _note_of(request))
    if view is None:
        raise not_found(f"no schedule {name}")
    return json_response(view)


async def resume_schedule(request: web.Request) -> web.Response:
    name = _name(request)
    view = await schedule_ops.resume(state.db(request), name, await _note_of(request))
    if view is None:
        raise not_found(f"no schedule {name}")
    return json_response(view)


async def trigger_schedule(request: web.Request) -> web.Response:
    name = _name(request)
    # Published at once (a trigger is rare); if Redis refuses, the outbox row stays and the
    # watcher sends it: the answer is the same either way.
    publish = schedule_ops.stream_publisher(state.streams(request))
    result = await schedule_ops.trigger(
        state.db(request), name, state.config(request).tasks, publish
    )
    if result is None:
        raise not_found(f"no schedule {name}")
    request.app[state.METRICS].schedule_runs.add(1, {"outcome": "triggered"})
    return json_response(result, 201)


async def delete_schedule(request: web.Request) -> web.Response:
    name = _name(request)
    if not await schedule_ops.delete(state.db(request), name):
        raise not_found(f"no schedule {name}")
    return json_response(Deleted(deleted=name))


ROUTES: list[Route] = [
    ("GET", "/v1/schedules", list_schedules),
    ("PUT", NAME, put_schedule),
    ("GET", NAME, get_schedule),
    ("DELETE", NAME, delete_schedule),
    ("POST", NAME + "/pause", pause_schedule),
    ("POST", NAME + "/resume", resume_schedule),
    ("POST", NAME + "/trigger", trigger_schedule),
]
