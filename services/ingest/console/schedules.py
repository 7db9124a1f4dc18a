"""The schedules pages: every schedule with its next run, last run, and how many ticks were
enqueued, caught up, skipped, missed or triggered; one schedule with its next runs and latest
runs; pause (with a note), resume and trigger now. The same functions as
``/v1/schedules`` and ``taskstream schedules`` (``shared.schedule_ops``)."""

from __future__ import annotations

import msgspec
from aiohttp import web

from taskstream.services.ingest import state as ingest_state
from taskstream.services.ingest.console import forms, render, state
from taskstream.services.ingest.console.errors import PageError, require
from taskstream.services.ingest.console.session import WRITE
from taskstream.services.ingest.routes import Route
from taskstream.shared import schedule_ops
from taskstream.shared.schedule_models import ScheduleView

NOTE_MAX = 1000


async def schedules_page(request: web.Request) -> web.Response:
    listed = await schedule_ops.list_all(state.db(request), state.tenant(request))
    shown = [_shown(request, v) for v in listed.schedules]
    return render.page(request, "schedules.html", schedules=shown, notice=None)


async def schedule_page(request: web.Request) -> web.Response:
    return await _one(request, await _get(request))


async def _get(request: web.Request) -> ScheduleView:
    found = await schedule_ops.get(state.db(request), _stored(request))
    if found is None:
        raise PageError(404, f"There is no schedule {request.match_info['name']}.")
    return _shown(request, found)


def _stored(request: web.Request) -> str:
    """The stored name of the schedule the path names. A tenant's user names its own
    schedules as they know them; an admin (every tenant) by their stored names, another
    tenant's as ``<tenant>/<name>``."""
    name = request.match_info["name"]
    tenant = state.tenant(request)
    if tenant is None:
        return name
    if "/" in name:
        raise PageError(404, f"There is no schedule {name}.")
    return schedule_ops.stored_name(tenant, name)


def _shown(request: web.Request, view: ScheduleView) -> ScheduleView:
    """``view`` under the name its user knows it by."""
    if state.tenant(request) is None:
        return view
    return msgspec.structs.replace(view, name=schedule_ops.shown_name(view.name))


async def _one(
    request: web.Request, schedule: ScheduleView, notice: str | None = None
) -> web.Response:
    return render.page(request, "schedule.html", s=schedule, notice=notice)


async def pause(request: web.Request) -> web.Response:
    require(request, WRITE)
    note = _note(await request.post())
    done = await schedule_ops.pause(state.db(request), _stored(request), note)
    if done is None:
        raise PageError(404, f"There is no schedule {request.match_info['name']}.")
    return await _one(request, await _get(request), "Paused." if done.change == "updated" else
                      "It was paused already.")  # fmt: skip


async def resume(request: web.Request) -> web.Response:
    require(request, WRITE)
    note = _note(await request.post())
    done = await schedule_ops.resume(state.db(request), _stored(request), note)
    if done is None:
        raise PageError(404, f"There is no schedule {request.match_info['name']}.")
    return await _one(request, await _get(request), "Resumed." if done.change == "updated" else
                      "It was not paused.")  # fmt: skip


async def trigger(request: web.Request) -> web.Response:
    require(request, WRITE)
    name = request.match_info["name"]
    publish = schedule_ops.stream_publisher(state.streams(request))
    config = state.config(request)
    made = await schedule_ops.trigger(state.db(request), _stored(request), config.tasks, publish)
    if made is None:
        raise PageError(404, f"There is no schedule {name}.")
    request.config_dict[ingest_state.METRICS].schedule_runs.add(1, {"outcome": "triggered"})
    return await _one(request, await _get(request), f"Triggered: task {made.task_id}.")


def _note(form: object) -> str | None:
    note = forms.text(form, "note")  # type: ignore[arg-type]
    if note is not None and len(note) > NOTE_MAX:
        raise PageError(400, f"note must be at most {NOTE_MAX} characters")
    return note


NAME = "/schedules/{name:[A-Za-z0-9_.:/\\-]+}"  # an admin's view: <tenant>/<name> too
ROUTES: list[Route] = [
    ("GET", "/schedules", schedules_page),
    ("GET", NAME, schedule_page),
    ("POST", NAME + "/pause", pause),
    ("POST", NAME + "/resume", resume),
    ("POST", NAME + "/trigger", trigger),
]
