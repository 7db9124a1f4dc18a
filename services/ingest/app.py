"""The ingest HTTP API: validate (msgspec) → commit in Postgres (asyncpg) → XADD.

``build_app`` wires the shared state (``state.py``), the one error mapping (``errors.py``),
authentication and the scope of every route (``auth.py``) and the routes, one module per
resource (``routes/``), and mounts the operators' console under ``/ui/`` (``console/``),
which signs its users in with the same keys. Errors are JSON
``{"error": {"code", "message", "field"?}}`` with the right status, and a request that fails
leaves nothing half-written.
"""

from __future__ import annotations

from aiohttp import web

from taskstream.services.ingest import auth, state
from taskstream.services.ingest.committer import GroupCommit
from taskstream.services.ingest.console.access import KeyAccess
from taskstream.services.ingest.console.app import build_console, mount
from taskstream.services.ingest.console.session import Access
from taskstream.services.ingest.credentials import Authenticator
from taskstream.services.ingest.errors import errors_middleware
from taskstream.services.ingest.limits import Limiter
from taskstream.services.ingest.publisher import Publisher
from taskstream.services.ingest.routes import (
    Route,
    admin,
    dlq,
    queues,
    schedules,
    seeds,
    system,
    tasks,
    workflows,
)
from taskstream.services.ingest.waiters import Waiters
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.domain.access import OPS_READ, PUBLIC
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams

ROUTES: list[Route] = [
    *tasks.ROUTES,
    *queues.ROUTES,
    *dlq.ROUTES,
    *admin.ROUTES,
    *seeds.ROUTES,
    *schedules.ROUTES,
    *workflows.ROUTES,
    *system.ROUTES,
]


def build_app(
    config: Config,
    db: Database,
    streams: Streams,
    metrics: Metrics,
    publisher: Publisher,
    console_access: Access | None = None,
) -> web.Application:
    authenticator = Authenticator(config.access, db)
    # /metrics is public on the API port unless ingest has a listener of its own for it.
    metrics_scope = OPS_READ if config.service.metrics_addr else PUBLIC
    app = web.Application(
        middlewares=[
            errors_middleware,
            auth.middleware(authenticator, metrics, metrics_scope=metrics_scope),
        ],
        client_max_size=config.ingest.max_body_bytes,
    )
    app[state.AUTH] = authenticator
    app[state.LIMITER] = Limiter(db, streams, metrics, cache_ms=config.access.limits_cache_ms)
    app[state.CONFIG] = config
    app[state.DB] = db
    app[state.STREAMS] = streams
    app[state.METRICS] = metrics
    app[state.PUBLISHER] = publisher
    fair = config.access.fair_share_entries
    app[state.COMMITTER] = GroupCommit(
        db, publisher, metrics, key_ttl_ms=config.retention.idempotency_ttl_ms, fair=fair > 0
    )
    if fair > 0:
        limiter = app[state.LIMITER]
        publisher.share_fairly(lambda tenant: fair * limiter.weight(tenant))
    app[state.WAITERS] = Waiters(db, config.stores.database_url)
    app.on_shutdown.append(_release_waiters)
    app.on_cleanup.append(_close_committer)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    mount(app, build_console(config, streams, console_access or KeyAccess(authenticator, db)))
    return app


async def _release_waiters(app: web.Application) -> None:
    """At shutdown, before in-flight requests are waited for: every ``?wait=`` request is
    answered with its task as it stands."""
    app[state.WAITERS].release_all()


async def _close_committer(app: web.Application) -> None:
    """At shutdown: the group being committed is finished and answered, then what is still
    waiting to be published gets one last bounded try (the repair covers the rest); the
    waiters' listening connection is closed."""
    await app[state.COMMITTER].close()
    await app[state.PUBLISHER].close()
    await app[state.AUTH].close()
    await app[state.WAITERS].close()
