# mypy: ignore-errors
"""The taskiq side of the peer benchmark: a RedisStreamBroker (taskiq-redis) on this run's own
stream and consumer group, a no-op job that INCRs the run's counter, and ``hello`` for the
readiness check. Configured from the environment, so the worker processes
(``taskiq worker app_taskiq:broker``) and the driver build the same broker."""

from __future__ import annotations

import asyncio
import os

import redis.asyncio as aioredis
from taskiq_redis import RedisStreamBroker

REDIS_URL = os.environ["PEERS_REDIS_URL"]
NAMESPACE = os.environ["PEERS_NAMESPACE"]
COUNTER = f"{NAMESPACE}:done"
PIDS = f"{NAMESPACE}:pids"

broker = RedisStreamBroker(
    REDIS_URL,
    queue_name=f"{NAMESPACE}:stream",
    consumer_group_name=NAMESPACE,
    max_connection_pool_size=int(os.environ.get("PEERS_TASKIQ_POOL", "200")),
)

_client: aioredis.Redis | None = None


def client() -> aioredis.Redis:
    global _client
    if _client is None:
        _client = aioredis.Redis.from_url(REDIS_URL)
    return _client


@broker.task(task_name="peers_noop")
async def noop() -> None:
    await client().incr(COUNTER)


@broker.task(task_name="peers_hello")
async def hello() -> None:
    await client().sadd(PIDS, os.getpid())
    await asyncio.sleep(0.05)
