"""The queues and consumers page: per priority figures, the XPENDING view (each pending entry
with its consumer, idle time, deliveries and task), the executors' consumers, and removal of
a dead consumer (only one holding nothing pending: the Lua script re-checks)."""

from __future__ import annotations

from aiohttp import web

from taskstream.services.ingest.console import forms, render, state
from taskstream.services.ingest.console.errors import require
from taskstream.services.ingest.console.session import WRITE
from taskstream.services.ingest.routes import Route
from taskstream.shared import ops
from taskstream.shared.domain import PRIORITIES

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
    )
    consumers = sorted(
        (await ops.consumers(streams)).consumers,
        key=lambda c: (c.name, PRIORITIES.index(c.priority)),
    )
    return render.page(
        request,
        "queues.html",
        status,
        queues=(await ops.queues(db, streams)).queues,
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


ROUTES: list[Route] = [
    ("GET", "/queues", queues_page),
    ("POST", "/queues/consumers/remove", remove_consumer),
]
