"""The ingest service's lifetime: open the stores, serve HTTP, shut down in order.

Shutdown order: stop accepting connections → answer every ``?wait=`` request with its task as
it stands → finish in-flight requests → publish what is still deferred (once), close the
waiters' listening connection → close Redis and Postgres.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from taskstream.services.ingest.app import build_app
from taskstream.services.ingest.publisher import Publisher
from taskstream.shared.config import Config
from taskstream.shared.errors import StoreError
from taskstream.shared.metrics import Metrics
from taskstream.shared.runtime import stores

log = logging.getLogger(__name__)


async def serve(config: Config, metrics: Metrics, stop: asyncio.Event) -> None:
    # No connection at start (the pool fills on demand): ingest listens while Postgres is
    # down, answering 503 (and /readyz 503) until it is back.
    async with stores(config, stop, pool_min=0) as (db, streams):
        with contextlib.suppress(StoreError):
            await streams.ensure_groups()
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
        if publisher.backlog:
            log.warning(
                "%d tasks committed but not published; the watcher will re-send them",
                publisher.backlog,
                extra={"event": "ingest.unpublished"},
            )
