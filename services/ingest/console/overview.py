"""The overview page: per priority backlog, lag, in flight, oldest ages, retries, dead letters
and consumers, with the throughput of the last minutes; its live part refreshes itself every
``CONSOLE_REFRESH_MS`` (htmx), the same figures as ``GET /v1/queues``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from taskstream.services.ingest.console import render, state
from taskstream.services.ingest.routes import Route
from taskstream.shared import ops

MINUTES = 10


async def overview(request: web.Request) -> web.Response:
    return render.page(request, "overview.html", **await _figures(request))


async def live(request: web.Request) -> web.Response:
    return render.page(request, "overview_live.html", **await _figures(request))


async def _figures(request: web.Request) -> dict[str, Any]:
    db, streams = state.db(request), state.streams(request)
    figures = await ops.queues(db, streams)
    queues = figures.queues
    consumers = (await ops.consumers(streams)).consumers
    throughput = state.throughput(request)
    minutes = throughput.minutes(MINUTES)
    peak = max([m.delivered for m in minutes] + [m.added for m in minutes] + [1])
    return {
        "queues": queues,
        "paused_types": figures.paused_types,
        "totals": {
            "lag": sum(q.lag or 0 for q in queues),
            "pending": sum(q.pending for q in queues),
            "retries": sum(q.retries_waiting for q in queues),
            "delayed": sum(q.delayed_waiting for q in queues),
            "dead": sum(q.dead_letters for q in queues),
            "consumers": len({c.name for c in consumers}),
        },
        "minutes": minutes,
        "peak": peak,
        "rate": throughput.recent_rate(),
        "throughput_available": throughput.available,
    }


ROUTES: list[Route] = [
    ("GET", "/", overview),
    ("GET", "/overview/live", live),
]
