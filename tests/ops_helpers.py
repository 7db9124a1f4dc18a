"""Helpers for the operator tests: an executor with extra handlers, and dead letters."""

from __future__ import annotations

import uuid
from typing import Any

from taskstream.services.executor.executor import Executor
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.handlers import BUILTINS, Context, NonRetryableError, Registry
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.factories import enqueue, new_task


def executor(
    config: Config, db: Database, streams: Streams, metrics: Metrics, **handlers: Any
) -> Executor:
    """An executor (consumer ``test-1``) with the built-in handlers plus ``handlers``."""
    registry = Registry()
    for name, fn in {**BUILTINS, **handlers}.items():
        registry.register(name, fn)
    return Executor(config, db, streams, registry, metrics, consumer="test-1")


async def make_dead(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> dict[str, list[uuid.UUID]]:
    """Seven dead letters, by the executor: ``exhausted`` (4, default, type always_fail),
    ``unknown`` (2, high, type mystery: no handler) and ``refused`` (1, low, non-retryable)."""

    async def refuse(payload: Any, ctx: Context) -> None:
        raise NonRetryableError("bad input")

    tasks = {
        "exhausted": [new_task(config, "always_fail", max_attempts=1) for _ in range(4)],
        "unknown": [new_task(config, "mystery", priority="high") for _ in range(2)],
        "refused": [new_task(config, "refuse", priority="low")],
    }
    await enqueue(db, streams, [t for ts in tasks.values() for t in ts])
    await executor(config, db, streams, metrics, refuse=refuse).run_once()
    return {k: [t.id for t in ts] for k, ts in tasks.items()}
