# mypy: ignore-errors
"""Drives taskiq (RedisStreamBroker from taskiq-redis) for the peer benchmark; runs inside the
peers venv: ``python drive_taskiq.py --redis-url URL -n N --namespace NS --processes P``.

Workers: one ``taskiq worker --workers P`` (P child processes) with ``--max-async-tasks`` and
``--max-prefetch`` as below. Enqueueing: taskiq has no batch kick, so ``task.kiq()`` calls run
concurrently with ``asyncio.gather``, at most ``ENQUEUE_CONCURRENCY`` in flight (each is one
XADD on a pooled connection)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from importlib.metadata import version

import drive_common

MAX_ASYNC_TASKS = int(os.environ.get("PEERS_TASKIQ_MAX_ASYNC", "32"))
MAX_PREFETCH = int(os.environ.get("PEERS_TASKIQ_PREFETCH", "100"))
ENQUEUE_CONCURRENCY = int(os.environ.get("PEERS_TASKIQ_ENQUEUE", "256"))


def main() -> int:
    args = drive_common.parse_args()
    os.environ["PEERS_REDIS_URL"] = args.redis_url
    os.environ["PEERS_NAMESPACE"] = args.namespace
    os.environ["PEERS_TASKIQ_POOL"] = str(ENQUEUE_CONCURRENCY + 10)
    import app_taskiq

    loop = asyncio.new_event_loop()

    async def kick(k: int) -> None:
        gate = asyncio.Semaphore(ENQUEUE_CONCURRENCY)

        async def one() -> None:
            async with gate:
                await app_taskiq.noop.kiq()

        await asyncio.gather(*(one() for _ in range(k)))

    def enqueue(k: int, deadline: float) -> None:
        try:
            loop.run_until_complete(asyncio.wait_for(kick(k), deadline - time.monotonic()))
        except TimeoutError:
            raise drive_common.DriverError(f"timed out enqueueing {k} jobs") from None

    def teardown() -> None:
        # After an interruption the loop may still hold enqueue tasks: cancel them first.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(asyncio.wait_for(app_taskiq.broker.shutdown(), 10))

    worker = [
        sys.executable, "-m", "taskiq", "worker", "app_taskiq:broker",
        "--workers", str(args.processes),
        "--max-async-tasks", str(MAX_ASYNC_TASKS),
        "--max-prefetch", str(MAX_PREFETCH),
        "--log-level", "WARNING",
        "--shutdown-timeout", "2",
        "--wait-tasks-timeout", "2",
        "--max-fails", "3",  # exit (rather than restart forever) when the children keep dying
    ]  # fmt: skip
    settings = (
        f"RedisStreamBroker, {args.processes} worker processes x {MAX_ASYNC_TASKS} async tasks, "
        f"prefetch {MAX_PREFETCH}; kiq() gathered {ENQUEUE_CONCURRENCY} at a time"
    )
    try:
        result = drive_common.run(
            name="taskiq",
            version=f"{version('taskiq')} (taskiq-redis {version('taskiq-redis')})",
            settings=settings,
            worker_argv=worker,
            send_hello=lambda: loop.run_until_complete(app_taskiq.hello.kiq()),
            enqueue=enqueue,
            args=args,
            setup=lambda: loop.run_until_complete(app_taskiq.broker.startup()),
            teardown=teardown,
        )
    finally:
        loop.close()
    return 0 if result["rate"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
