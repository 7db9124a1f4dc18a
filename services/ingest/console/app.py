"""The operators' web console, mounted by ingest under ``/ui/`` (no second port to open).

Server-rendered pages (Jinja2) with htmx (vendored in ``static/``) for the parts that refresh
or open in place; every page works as plain HTML forms and links without it. The pages read
and change through the same functions as the API and the CLI (``shared.ops``, the
``Database`` and ``Streams`` methods), so they use the same indexed queries and cursor pages
and never count history.

The console is an aiohttp sub-application with its own middleware (``guard``): it loads the
session, refuses a POST without its CSRF token, sends visitors who must sign in to the login
page, answers errors as HTML pages, and adds the security headers. Pages: ``overview``,
``tasks`` (the list and one task), ``dlq``, ``queues``, ``schedules``, ``workflows``;
``login`` for sign-in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.resources import files

from aiohttp import web

from taskstream.services.ingest.console import (
    dlq,
    login,
    overview,
    queues,
    render,
    schedules,
    state,
    tasks,
    workflows,
)
from taskstream.services.ingest.console.errors import PageError
from taskstream.services.ingest.console.session import COOKIE, LOCAL, Access, OpenAccess, Sessions
from taskstream.services.ingest.console.throughput import Throughput
from taskstream.services.ingest.errors import Invalid
from taskstream.shared import ops
from taskstream.shared.config import Config
from taskstream.shared.errors import StoreError, StoreUnavailable
from taskstream.shared.schedule_ops import InvalidSchedule
from taskstream.shared.streams import Streams

log = logging.getLogger(__name__)

PREFIX = "/ui/"
STATIC = files("taskstream.services.ingest.console") / "static"
PUBLIC = ("/ui/login",)  # answered before signing in

# No inline script or style anywhere: htmx is told not to add its indicator styles.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_console(
    config: Config, streams: Streams, access: Access | None = None
) -> web.Application:
    """The console application, to mount with ``add_subapp(PREFIX, …)``; ``access`` decides
    sign-in (default: ``OpenAccess``, an API without authentication)."""
    console = web.Application(middlewares=[guard])
    console[state.SESSIONS] = Sessions(
        config.console.console_secret, config.console.console_session_ttl_ms
    )
    console[state.ACCESS] = access or OpenAccess()
    console[state.THROUGHPUT] = Throughput(streams, config.console.console_sample_ms)
    console[state.TEMPLATES] = render.environment()
    console.cleanup_ctx.append(_sampling)
    for module in (overview, tasks, dlq, queues, schedules, workflows, login):
        for method, path, handler in module.ROUTES:
            console.router.add_route(method, path, handler)
    console.router.add_static("/static/", str(STATIC), append_version=False)
    return console


def mount(app: web.Application, console: web.Application) -> None:
    """Serve ``console`` under ``/ui/`` (``/ui`` redirects there)."""
    app.add_subapp(PREFIX, console)


async def _sampling(console: web.Application) -> AsyncIterator[None]:
    """Sample the streams' counters for the throughput while ingest runs."""
    stop = asyncio.Event()
    task = asyncio.create_task(console[state.THROUGHPUT].run(stop))
    yield
    stop.set()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path == PREFIX.rstrip("/"):
        return web.Response(status=308, headers={"Location": PREFIX})
    if request.path.startswith(PREFIX + "static/"):
        return await _static(request, handler)
    sessions, access = state.sessions(request), state.access(request)
    loaded = sessions.load(request.cookies.get(COOKIE))
    fresh = loaded is None or (not access.required and loaded.principal is None)
    session = sessions.new(None if access.required else LOCAL) if fresh else loaded
    assert session is not None
    request[state.SESSION] = session
    response: web.StreamResponse
    try:
        principal = session.principal
        if access.required and principal is not None and not await access.still_valid(principal):
            # A revoked or expired key: its session ends here.
            session = sessions.new(None)
            request[state.SESSION] = session
            fresh = True
        if request.method == "POST":
            form = await request.post()
            token = request.headers.get("X-CSRF-Token") or form.get("csrf")
            if not sessions.csrf_ok(session, token if isinstance(token, str) else None):
                raise PageError(
                    403,
                    "This form has expired or did not come from this console. "
                    "Reload the page and try again.",
                )
        if session.principal is None and request.path not in PUBLIC:
            response = _to_login(request)
        else:
            response = await handler(request)
    except PageError as exc:
        response = render.page(
            request, "error.html", exc.status, title=exc.title, message=exc.message
        )
    except Invalid as exc:
        response = render.page(
            request,
            "error.html",
            exc.status,
            title="Not found" if exc.status == 404 else "Bad request",
            message=exc.error.message,
        )
    except (ops.BadRequest, InvalidSchedule) as exc:
        response = render.page(request, "error.html", 400, title="Bad request", message=str(exc))
    except StoreUnavailable as exc:
        response = render.page(
            request, "error.html", 503, title="A store is unreachable", message=str(exc)
        )
        response.headers["Retry-After"] = "1"
    except StoreError as exc:
        log.error("console: store error: %s", exc, extra={"event": "console.store_error"})
        response = render.page(
            request, "error.html", 503, title="The store refused", message="Try again shortly."
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = render.page(
            request, "error.html", exc.status, title=exc.reason, message=exc.reason
        )
    except Exception:
        log.exception("console: unhandled error", extra={"event": "console.error"})
        response = render.page(
            request, "error.html", 500, title="Internal error", message="Something went wrong."
        )
    if fresh:
        _set_cookie(request, response, sessions.dump(session), sessions.max_age_s)
    renewed = request.get(state.NEW_COOKIE)
    if renewed:
        _set_cookie(request, response, renewed, sessions.max_age_s)
    _secure_headers(response)
    return response


async def _static(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers["Cache-Control"] = "public, max-age=3600"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _to_login(request: web.Request) -> web.Response:
    target = "/ui/login?next=" + request.path_qs if request.method == "GET" else "/ui/login"
    if request.headers.get("HX-Request"):  # htmx: the whole page goes, not a fragment
        return web.Response(status=200, headers={"HX-Redirect": target})
    return web.Response(status=303, headers={"Location": target})


def _set_cookie(request: web.Request, response: web.StreamResponse, value: str, age: int) -> None:
    over_tls = request.secure or request.headers.get("X-Forwarded-Proto") == "https"
    response.set_cookie(
        COOKIE, value, max_age=age, path=PREFIX, httponly=True, samesite="Strict", secure=over_tls
    )


def _secure_headers(response: web.StreamResponse) -> None:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cache-Control", "no-store")
