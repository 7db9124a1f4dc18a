"""Who may call which route: the scope of every route, in one table, and the middleware that
authenticates the bearer token and checks the scope.

Every route of the app has an entry in ``SCOPES`` (a test walks ``app.router.routes()``); one
without is refused to everyone (403), never left open. ``PUBLIC`` routes take no credential:
``/healthz``, ``/readyz``, ``/openapi.json`` (the document is no secret), and ``/metrics`` on
the API port unless ingest has a metrics listener of its own (``METRICS_ADDR``), in which case
``/metrics`` here needs ``ops:read``. With auth off (``AUTH_MODE=off``) nothing is checked:
every request is the ``default`` tenant with every scope.

An admin may act for another tenant with ``X-Taskstream-Tenant: <name>``; anyone else may name
only their own tenant there.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from taskstream.services.ingest.credentials import Authenticator, Unauthorized
from taskstream.services.ingest.errors import error_response
from taskstream.shared.domain.access import (
    ADMIN,
    OFF,
    OPS_READ,
    OPS_WRITE,
    PUBLIC,
    TASKS_READ,
    TASKS_WRITE,
    Principal,
    valid_tenant,
)
from taskstream.shared.metrics import Metrics

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
TENANT_HEADER = "X-Taskstream-Tenant"
METRICS_SCOPED = "metrics"  # /metrics: PUBLIC, or ops:read when ingest has METRICS_ADDR

# (method, canonical path) → the scope it needs.
SCOPES: dict[tuple[str, str], str] = {
    ("POST", "/v1/tasks"): TASKS_WRITE,
    ("POST", "/v1/tasks/batch"): TASKS_WRITE,
    ("GET", "/v1/tasks"): TASKS_READ,
    ("GET", "/v1/tasks/{id}"): TASKS_READ,
    ("POST", "/v1/tasks/{id}/cancel"): TASKS_WRITE,
    ("GET", "/v1/tasks/{id}/history"): TASKS_READ,
    ("POST", "/tasks"): TASKS_WRITE,
    ("POST", "/addJob"): TASKS_WRITE,
    ("GET", "/failedJobs"): OPS_READ,
    ("GET", "/v1/queues"): OPS_READ,
    ("GET", "/v1/queues/{priority}/pending"): OPS_READ,
    ("GET", "/v1/consumers"): OPS_READ,
    ("GET", "/v1/dlq"): OPS_READ,
    ("POST", "/v1/dlq/replay"): OPS_WRITE,
    ("DELETE", "/v1/dlq/{id}"): OPS_WRITE,
    ("POST", "/v1/queues/pause"): OPS_WRITE,
    ("POST", "/v1/queues/resume"): OPS_WRITE,
    ("GET", "/v1/queues/pauses"): OPS_READ,
    ("GET", "/v1/schedules"): OPS_READ,
    ("GET", "/v1/schedules/{name}"): OPS_READ,
    ("PUT", "/v1/schedules/{name}"): OPS_WRITE,
    ("DELETE", "/v1/schedules/{name}"): OPS_WRITE,
    ("POST", "/v1/schedules/{name}/pause"): OPS_WRITE,
    ("POST", "/v1/schedules/{name}/resume"): OPS_WRITE,
    ("POST", "/v1/schedules/{name}/trigger"): OPS_WRITE,
    # Workflows are not kept per tenant yet (their steps would be the default tenant's), so
    # only an admin, who sees every tenant, may submit, read or cancel them.
    ("POST", "/v1/workflows"): ADMIN,
    ("GET", "/v1/workflows"): ADMIN,
    ("GET", "/v1/workflows/{id}"): ADMIN,
    ("POST", "/v1/workflows/{id}/cancel"): ADMIN,
    ("GET", "/v1/keys"): ADMIN,
    ("POST", "/v1/keys"): ADMIN,
    ("DELETE", "/v1/keys/{id}"): ADMIN,
    ("GET", "/v1/limits"): ADMIN,
    ("PUT", "/v1/limits/{kind}/{name}"): ADMIN,
    ("DELETE", "/v1/limits/{kind}/{name}"): ADMIN,
    ("GET", "/v1/tenants"): ADMIN,
    ("PUT", "/v1/tenants/{name}"): ADMIN,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/metrics"): METRICS_SCOPED,
}


# The console (``/ui/``) signs its users in with the same keys, through its own session cookie,
# and checks the scope of each of its actions itself (``console/``): no bearer token here.
CONSOLE = "console"


def scope_of(method: str, canonical: str) -> str | None:
    """The scope of a route, by its method and canonical path (patterns dropped: ``{id}``)."""
    if canonical == "/ui" or canonical.startswith("/ui/"):
        return CONSOLE
    return SCOPES.get((method, canonical))


def undeclared(app: web.Application) -> list[str]:
    """Routes of ``app`` without a scope in ``SCOPES``."""
    out = []
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        if scope_of(route.method, route.resource.canonical) is None:
            out.append(f"{route.method} {route.resource.canonical}")
    return out


def principal(request: web.Request) -> Principal:
    """Who the request acts as (auth off: the default tenant with every scope)."""
    who: Principal = request.get(PRINCIPAL, OFF)
    return who


def unauthorized(message: str) -> web.Response:
    return error_response(
        401, "unauthorized", message,
        **{"WWW-Authenticate": 'Bearer realm="taskstream", error="invalid_token"'},
    )  # fmt: skip


def forbidden(message: str) -> web.Response:
    return error_response(403, "forbidden", message)


def middleware(
    authenticator: Authenticator, metrics: Metrics, *, metrics_scope: str = PUBLIC
) -> Middleware:
    """Authenticate and authorise every request; a request passes with its ``Principal``
    under ``PRINCIPAL``. Off: no check at all (the hot path pays one branch)."""
    enabled = authenticator.enabled
    rejected = metrics.rejected

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not enabled:
            return await handler(request)
        route = request.match_info.route
        resource = route.resource
        if resource is None:  # no such route (404) or method (405): nothing to protect
            return await handler(request)
        scope = scope_of(route.method, resource.canonical)
        if scope == METRICS_SCOPED:
            scope = metrics_scope
        if scope in (PUBLIC, CONSOLE):
            return await handler(request)
        if scope is None:
            log.error(
                "route %s %s declares no scope: refused",
                route.method,
                resource.canonical,
                extra={"event": "auth.undeclared"},
            )
            rejected.add(1, {"reason": "forbidden"})
            return forbidden("this route declares no scope, so nobody may call it")
        try:
            who = await authenticator.authenticate(request.headers.get("Authorization"))
        except Unauthorized as exc:
            rejected.add(1, {"reason": "unauthorized"})
            return unauthorized(str(exc))
        if not who.allows(scope):
            rejected.add(1, {"reason": "forbidden"})
            return forbidden(f"this route needs the {scope!r} scope")
        named = request.headers.get(TENANT_HEADER)
        if named and named != who.tenant:
            if not who.admin:
                rejected.add(1, {"reason": "forbidden"})
                return forbidden(f"only an admin may act for another tenant ({TENANT_HEADER})")
            if not valid_tenant(named):
                return error_response(
                    400, "invalid", f"{TENANT_HEADER} is not a tenant name", TENANT_HEADER
                )
            who = who.acting_for(named)
        request[PRINCIPAL] = who
        return await handler(request)

    return auth
