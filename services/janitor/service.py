"""The janitor service's lifetime: open the stores, run the janitor, close in order."""

from __future__ import annotations

import asyncio
import logging
import socket

from taskstream.services.janitor.janitor import Janitor
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
    name = config.consumer_name or f"janitor-{socket.gethostname()}"
    try:
        log.info(
            "janitor %s: visibility timeout %d ms, poison after %d deliveries",
            name,
            config.vis_timeout_ms,
            config.max_deliveries,
            extra={"event": "janitor.started"},
        )
        await Janitor(config, db, streams, metrics, name=name).run(stop)
    finally:
        await streams.close()
        await db.close()
        if metrics_runner is not None:
            await metrics_runner.cleanup()
