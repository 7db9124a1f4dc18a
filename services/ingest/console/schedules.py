"""The schedules pages: every schedule with its next run, last run, and how many ticks were
enqueued, caught up, skipped, missed or triggered; one schedule with its next runs and latest
runs; pause (with a note), resume and trigger now. The same functions as
``/v1/schedules`` and ``taskstream schedules`` (``shared.schedule_ops``)."""

from __future__ import annotations

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
    listed = await schedule_ops.list_all(state.db(request))
    return render.page(request, "schedules.html", schedules=listed.schedules, notice=None)


async def schedule_page(request: web.Request) -> web.Response:
    return await _one(request, await _get(request))


async def _get(request: web.Request) -> ScheduleView:
    name = request.match_info["name"]
    found = await schedule_ops.get(state.db(request), name)
    if found is None:
        raise PageError(404, f"There is no schedule {name}.")
    return found


async def _one(
    request: web.Request, schedule: ScheduleView, notice: str | None = None
) -> web.Response:
    return render.page(request, "schedule.html", s=schedule, notice=notice)


async def pause(request: web.Request) -> web.Response:
    require(request, WRITE)
    note = _note(await request.post())
    done = await schedule_ops.pause(state.db(request), request.match_info["name"], note)
    if done is None:
        raise PageError(404, f"There is no schedule {request.match_info['name']}.")
    return await _one(request, await _get(request), "Paused." if done.change == "updated" else
                      "It was paused already.")  # fmt: skip


async def resume(request: web.Request) -> web.Response:
    require(request, WRITE)
    note = _note(await request.post())
    done = await schedule_ops.resume(state.db(request), request.match_info["name"], note)
    if done is None:
        raise PageError(404, f"There is no schedule {request.match_info['name']}.")
    return await _one(request, await _get(request), "Resumed." if done.change == "updated" else
                      "It was not paused.")  # fmt: skip


async def trigger(request: web.Request) -> web.Response:
    require(request, WRITE)
    name = request.match_info["name"]
    publish = schedule_ops.stream_publisher(state.streams(request))
    made = await schedule_ops.trigger(state.db(request), name, state.config(request).tasks, publish)
    if made is None:
        raise PageError(404, f"There is no schedule {name}.")
    request.config_dict[ingest_state.METRICS].schedule_runs.add(1, {"outcome": "triggered"})
    return await _one(request, await _get(request), f"Triggered: task {made.task_id}.")


def _note(form: object) -> str | None:
    note = forms.text(form, "note")  # type: ignore[arg-type]
    if note is not None and len(note) > NOTE_MAX:
        raise PageError(400, f"note must be at most {NOTE_MAX} characters")
    return note


NAME = "/schedules/{name:[A-Za-z0-9_.:\\-]+}"
ROUTES: list[Route] = [
    ("GET", "/schedules", schedules_page),
    ("GET", NAME, schedule_page),
    ("POST", NAME + "/pause", pause),
    ("POST", NAME + "/resume", resume),
    ("POST", NAME + "/trigger", trigger),
]
