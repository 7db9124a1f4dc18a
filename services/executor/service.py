"""The executor service's lifetime: open the stores, run the consumer, close in order."""

from __future__ import annotations

import asyncio
import logging

from taskstream.services.executor.executor import Executor
from taskstream.shared import handlers
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.keys import Keys
from taskstream.shared.metrics import Metrics
from taskstream.shared.runtime import consumer_name, serve_metrics
from taskstream.shared.streams import Streams

log = logging.getLogger(__name__)


async def serve(config: Config, metrics: Metrics, stop: asyncio.Event, *, burst: bool) -> None:
    handlers.load_modules(config.handler_modules)
    consumer = consumer_name(config.consumer_name)
    metrics_runner = await serve_metrics(config.metrics_addr)
    db = await Database.connect(
        config.database_url, min_size=config.db_pool_min, max_size=config.db_pool_max
    )
    streams = Streams.connect(config.redis_url, Keys(config.namespace))
    try:
        executor = Executor(config, db, streams, handlers.registry, metrics, consumer=consumer)
        log.info(
            "executor %s: %d handlers, %s priorities, handlers for %s",
            consumer,
            config.worker_pool,
            config.priority_mode,
            ", ".join(handlers.registry.types()),
            extra={"event": "executor.started"},
        )
        done = await executor.run(stop, burst=burst)
        log.info(
            "executor %s stopped after %d deliveries",
            consumer,
            done,
            extra={"event": "executor.stopped"},
        )
    finally:
        await streams.close()
        await db.close()
        if metrics_runner is not None:
            await metrics_runner.cleanup()
