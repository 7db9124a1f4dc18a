"""The ingest service's lifetime: open the stores, serve HTTP, shut down in order.

Shutdown order: stop accepting connections → answer every ``?wait=`` request with its task as
it stands → finish in-flight requests → publish what is still deferred (once), close the
waiters' listening connection → close Redis and Postgres.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging

from aiohttp import web

from taskstream.services.ingest.app import build_app
from taskstream.services.ingest.publisher import Publisher
from taskstream.shared.config import Config, auth_kinds
from taskstream.shared.db import Database
from taskstream.shared.domain.access import ADMIN, DEFAULT_TENANT
from taskstream.shared.errors import ConfigError, StoreError
from taskstream.shared.metrics import Metrics
from taskstream.shared.runtime import serve_metrics, stores

log = logging.getLogger(__name__)


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check(config: Config) -> None:
    """Refuse auth off on an address others can reach, unless told explicitly."""
    a, host = config.access, config.ingest.http_host
    if auth_kinds(a) or loopback(host):
        return
    if not a.auth_allow_insecure:
        raise ConfigError(
            f"AUTH_MODE=off with HTTP_HOST={host}: anyone who can reach it could act as any "
            "tenant. Set AUTH_MODE=keys (or jwt), bind HTTP_HOST=127.0.0.1, or set "
            "AUTH_ALLOW_INSECURE=1"
        )


async def _bootstrap_key(db: Database, key: str, stop: asyncio.Event) -> None:
    """Make sure API_KEY_BOOTSTRAP exists (hashed), waiting for Postgres if need be."""
    while not stop.is_set():
        try:
            created = await db.create_api_key(DEFAULT_TENANT, [ADMIN], name="bootstrap", key=key)
            if created is not None:
                log.info(
                    "stored the bootstrap API key %s… (admin, tenant default)",
                    created.api_key.prefix,
                    extra={"event": "ingest.bootstrap_key"},
                )
            return
        except StoreError as exc:
            log.warning("cannot store the bootstrap key yet: %s", exc,
                        extra={"event": "ingest.bootstrap_key_waiting"})  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


async def serve(config: Config, metrics: Metrics, stop: asyncio.Event) -> None:
    check(config)
    if not auth_kinds(config.access):
        log.warning(
            "auth is off (AUTH_MODE=off): every request acts as the default tenant with every "
            "scope, which is fine on %s only",
            config.ingest.http_host,
            extra={"event": "ingest.auth_off"},
        )
    # No connection at start (the pool fills on demand): ingest listens while Postgres is
    # down, answering 503 (and /readyz 503) until it is back.
    async with stores(config, stop, pool_min=0) as (db, streams):
        with contextlib.suppress(StoreError):
            await streams.ensure_groups()
        if config.access.api_key_bootstrap:
            await _bootstrap_key(db, config.access.api_key_bootstrap, stop)
        own_metrics = await serve_metrics(config.service.metrics_addr)
        publisher = Publisher(streams, metrics, retry_ms=config.ingest.publish_retry_ms, db=db)
        app = build_app(config, db, streams, metrics, publisher)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=10)
        await runner.setup()
        await web.TCPSite(runner, config.ingest.http_host, config.ingest.http_port).start()
        log.info(
            "ingest listening on http://%s:%d",
            config.ingest.http_host,
            config.ingest.http_port,
            extra={"event": "ingest.started"},
        )
        await stop.wait()
        await runner.cleanup()  # finishes requests, then closes the committer and publisher
        if own_metrics is not None:
            await own_metrics.cleanup()
        if publisher.backlog:
            log.warning(
                "%d tasks committed but not published; the watcher will re-send them",
                publisher.backlog,
                extra={"event": "ingest.unpublished"},
            )
