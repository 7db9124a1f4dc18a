"""The queues and consumers page: per priority figures with pause and resume (a priority or a
task type, cluster-wide, with a note), the XPENDING view (each pending entry with its
consumer, idle time, deliveries and task), the executors' consumers, and removal of a dead
consumer (only one holding nothing pending: the Lua script re-checks)."""

from __future__ import annotations

import msgspec
from aiohttp import web

from taskstream.services.ingest.console import forms, render, state
from taskstream.services.ingest.console.errors import PageError, require
from taskstream.services.ingest.console.session import WRITE
from taskstream.services.ingest.routes import Route
from taskstream.shared import ops, schedule_ops
from taskstream.shared.domain import PRIORITIES
from taskstream.shared.schedule_models import QueuePauseRequest

PENDING_PAGE = 100
_DAY_S = 24 * 3600


async def queues_page(request: web.Request) -> web.Response:
    return await _page(request)


async def _page(request: web.Request, notice: str | None = None, status: int = 200) -> web.Response:
    q = request.query
    db, streams = state.db(request), state.streams(request)
    priority = forms.choice(q, "priority", PRIORITIES)
    consumer = forms.text(q, "consumer")
    min_idle_s = forms.integer(q, "min_idle_s", 0, 0, 365 * _DAY_S)
    pending = await ops.pending(
        db,
        streams,
        priority=priority,
        consumer=consumer,
        min_idle_ms=min_idle_s * 1000,
        limit=PENDING_PAGE,
        tenant=state.tenant(request),
    )
    consumers = sorted(
        (await ops.consumers(streams)).consumers,
        key=lambda c: (c.name, PRIORITIES.index(c.priority)),
    )
    figures = await ops.queues(db, streams)
    return render.page(
        request,
        "queues.html",
        status,
        queues=figures.queues,
        paused_types=figures.paused_types,
        consumers=consumers,
        pending=pending.entries,
        pending_limit=PENDING_PAGE,
        priorities=PRIORITIES,
        filters={"priority": priority or "", "consumer": consumer or "", "min_idle_s": min_idle_s},
        vis_timeout_ms=state.config(request).lease.vis_timeout_ms,
        notice=notice,
    )


async def remove_consumer(request: web.Request) -> web.Response:
    require(request, WRITE)
    form = await request.post()
    priority = forms.choice(form, "priority", PRIORITIES) or "default"
    name = forms.text(form, "name")
    if name is None:
        return await _page(request, "Name the consumer to remove.", 400)
    if await ops.remove_consumer(state.streams(request), priority, name):
        return await _page(request, f"Removed consumer {name} from {priority}.")
    return await _page(
        request,
        f"Kept consumer {name} on {priority}: it holds pending entries (the janitor reclaims "
        "them after the visibility timeout) or is gone already.",
        409,
    )


async def pause(request: web.Request) -> web.Response:
    """Pause a priority or a task type: executors start none of its tasks (they wait, no
    attempt used); running ones finish."""
    require(request, WRITE)
    req = _pause_request(await request.post())
    done = await schedule_ops.pause_queue(state.db(request), req)
    what = f"{done.kind} {done.name}"
    return await _page(request, f"Paused {what}." if done.changed else f"{what} was paused.")


async def resume(request: web.Request) -> web.Response:
    require(request, WRITE)
    req = _pause_request(await request.post())
    done = await schedule_ops.resume_queue(state.db(request), req)
    what = f"{done.kind} {done.name}"
    return await _page(request, f"Resumed {what}." if done.changed else f"{what} was not paused.")


def _pause_request(form: object) -> QueuePauseRequest:
    values = {k: forms.text(form, k) for k in ("priority", "type", "note")}  # type: ignore[arg-type]
    try:
        return msgspec.convert(
            {k: v for k, v in values.items() if v is not None}, QueuePauseRequest
        )
    except msgspec.ValidationError as exc:
        raise PageError(400, f"Cannot pause that: {exc}") from None


ROUTES: list[Route] = [
    ("GET", "/queues", queues_page),
    ("POST", "/queues/pause", pause),
    ("POST", "/queues/resume", resume),
    ("POST", "/queues/consumers/remove", remove_consumer),
]
