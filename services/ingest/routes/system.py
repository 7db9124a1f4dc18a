"""Health, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from aiohttp import web

from taskstream.services.ingest import openapi, state
from taskstream.services.ingest.errors import json_response
from taskstream.services.ingest.routes import Route
from taskstream.shared import metrics
from taskstream.shared.errors import StoreError


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    for name, ping in (
        ("postgres", state.db(request).ping),
        ("redis", state.streams(request).ping),
    ):
        try:
            await ping()
            checks[name] = "ok"
        except StoreError as exc:
            checks[name] = f"unavailable: {exc}"
    ok = all(v == "ok" for v in checks.values())
    return json_response(
        {"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503
    )


async def metrics_route(request: web.Request) -> web.Response:
    return web.Response(body=metrics.prometheus_text(), content_type="text/plain")


async def openapi_route(request: web.Request) -> web.Response:
    return json_response(openapi.spec())


ROUTES: list[Route] = [
    ("GET", "/healthz", healthz),
    ("GET", "/readyz", readyz),
    ("GET", "/metrics", metrics_route),
    ("GET", "/openapi.json", openapi_route),
]
