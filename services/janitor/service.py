"""The janitor service's lifetime: open the stores (waiting for them), run the janitor's roles
until SIGTERM, close in order (metrics listener, Redis, Postgres)."""

from __future__ import annotations

import asyncio
import logging
import socket

from taskstream.services.janitor.janitor import Janitor
from taskstream.shared.config import Config
from taskstream.shared.metrics import Metrics
from taskstream.shared.runtime import Health, serve_metrics, stores

log = logging.getLogger(__name__)


async def serve(config: Config, metrics: Metrics, stop: asyncio.Event) -> None:
    health = Health()
    metrics_runner = await serve_metrics(config.service.metrics_addr, health)
    name = config.executor.consumer_name or f"janitor-{socket.gethostname()}"
    try:
        async with stores(config, stop, pool_min=1, health=health) as (db, streams):
            log.info(
                "janitor %s: visibility timeout %d ms, poison after %d deliveries",
                name,
                config.lease.vis_timeout_ms,
                config.lease.max_deliveries,
                extra={"event": "janitor.started"},
            )
            await Janitor(config, db, streams, metrics, name=name).run(stop)
    finally:
        if metrics_runner is not None:
            await metrics_runner.cleanup()
