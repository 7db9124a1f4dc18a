"""The executor service's lifetime: import the handler modules, open the stores (waiting for
them), run the consumer until SIGTERM (its own shutdown order is in ``executor.py``), close in
order (metrics listener, Redis, Postgres)."""

from __future__ import annotations

import asyncio
import logging

from taskstream.services.executor.executor import Executor
from taskstream.shared import handlers
from taskstream.shared.config import Config
from taskstream.shared.metrics import Metrics
from taskstream.shared.runtime import Health, consumer_name, serve_metrics, stores

log = logging.getLogger(__name__)


async def serve(config: Config, metrics: Metrics, stop: asyncio.Event, *, burst: bool) -> None:
    handlers.load_modules(config.executor.handler_modules)
    consumer = consumer_name(config.executor.consumer_name)
    metrics.zero(handlers.registry.types())
    health = Health()
    metrics_runner = await serve_metrics(config.service.metrics_addr, health)
    try:
        async with stores(config, stop, health=health) as (db, streams):
            executor = Executor(config, db, streams, handlers.registry, metrics, consumer=consumer)
            log.info(
                "executor %s: %d handlers, %s priorities, handlers for %s",
                consumer,
                config.executor.worker_pool,
                config.executor.priority_mode,
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
        if metrics_runner is not None:
            await metrics_runner.cleanup()
