"""The watcher service's lifetime: open the stores, run the watcher, close in order."""

from __future__ import annotations

import asyncio
import logging

from taskstream.services.watcher.watcher import Watcher
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.keys import Keys
from taskstream.shared.metrics import Metrics
from taskstream.shared.runtime import serve_metrics
from taskstream.shared.streams import Streams

log = logging.getLogger(__name__)


async def serve(config: Config, metrics: Metrics, stop: asyncio.Event) -> None:
    metrics_runner = await serve_metrics(config.metrics_addr)
    db = await Database.connect(config.database_url, min_size=1, max_size=config.db_pool_max)
    streams = Streams.connect(config.redis_url, Keys(config.namespace))
    try:
        log.info(
            "watcher: every %d ms, repair after %d ms",
            config.watch_interval_ms,
            config.repair_after_ms,
            extra={"event": "watcher.started"},
        )
        await Watcher(config, db, streams, metrics).run(stop)
    finally:
        await streams.close()
        await db.close()
        if metrics_runner is not None:
            await metrics_runner.cleanup()
