"""The watcher service's lifetime: open the stores (waiting for them), run the watcher's
roles until SIGTERM, close in order (metrics listener, Redis, Postgres)."""

from __future__ import annotations

import asyncio
import logging

from taskstream.services.watcher.watcher import Watcher
from taskstream.shared.config import Config
from taskstream.shared.metrics import Metrics
from taskstream.shared.runtime import Health, serve_metrics, stores

log = logging.getLogger(__name__)


async def serve(config: Config, metrics: Metrics, stop: asyncio.Event) -> None:
    health = Health()
    metrics_runner = await serve_metrics(config.service.metrics_addr, health)
    try:
        async with stores(config, stop, pool_min=1, health=health) as (db, streams):
            log.info(
                "watcher: every %d ms, repair after %d ms",
                config.watcher.watch_interval_ms,
                config.watcher.repair_after_ms,
                extra={"event": "watcher.started"},
            )
            await Watcher(config, db, streams, metrics).run(stop)
    finally:
        if metrics_runner is not None:
            await metrics_runner.cleanup()
