"""The ingest service's lifetime: open the stores, serve HTTP, shut down in order.

Shutdown order: stop accepting connections and finish in-flight requests → publish what is
still deferred (once) → close Redis and Postgres.
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
    async with stores(config, stop) as (db, streams):
        with contextlib.suppress(StoreError):
            await streams.ensure_groups()
        publisher = Publisher(streams, metrics, retry_ms=config.ingest.publish_retry_ms)
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
        retry = asyncio.create_task(publisher.run(stop))
        await stop.wait()
        await runner.cleanup()
        await retry
        if publisher.backlog:
            await publisher.flush()
        if publisher.backlog:
            log.warning(
                "%d tasks committed but not published; the watcher will re-send them",
                publisher.backlog,
                extra={"event": "ingest.unpublished"},
            )
