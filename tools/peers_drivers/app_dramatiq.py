# mypy: ignore-errors
"""The dramatiq side of the peer benchmark: a RedisBroker in this run's own namespace with
dramatiq's default middleware, a no-op actor that INCRs the run's counter, and ``hello`` for
the readiness check. Configured from the environment, so the worker processes
(``dramatiq app_dramatiq``) and the driver build the same broker."""

from __future__ import annotations

import os
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

REDIS_URL = os.environ["PEERS_REDIS_URL"]
NAMESPACE = os.environ["PEERS_NAMESPACE"]
COUNTER = f"{NAMESPACE}:done"
PIDS = f"{NAMESPACE}:pids"

broker = RedisBroker(url=REDIS_URL, namespace=NAMESPACE)
dramatiq.set_broker(broker)

_client: redis.Redis | None = None
_client_pid = 0


def client() -> redis.Redis:
    """One client (a thread-safe connection pool) per process."""
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        _client, _client_pid = redis.Redis.from_url(REDIS_URL), os.getpid()
    return _client


@dramatiq.actor(queue_name="peers", max_retries=0)
def noop() -> None:
    client().incr(COUNTER)


@dramatiq.actor(queue_name="peers", max_retries=0)
def hello() -> None:
    client().sadd(PIDS, os.getpid())
    time.sleep(0.05)
