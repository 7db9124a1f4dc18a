# mypy: ignore-errors
"""Drives dramatiq (RedisBroker) for the peer benchmark; runs inside the peers venv:
``python drive_dramatiq.py --redis-url URL -n N --namespace NS --processes P``.

Workers: one ``dramatiq app_dramatiq --processes P --threads T`` (dramatiq's default prefetch,
2 x T per process). Enqueueing: dramatiq has no batch enqueue (``group`` and pipelines send
one message at a time too), so ``actor.send()`` runs from ``ENQUEUE_THREADS`` threads sharing
the broker's connection pool (each send is one EVALSHA of dramatiq's enqueue script)."""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version

import drive_common

THREADS = int(os.environ.get("PEERS_DRAMATIQ_THREADS", "8"))
ENQUEUE_THREADS = int(os.environ.get("PEERS_DRAMATIQ_ENQUEUE", "8"))


def main() -> int:
    args = drive_common.parse_args()
    os.environ["PEERS_REDIS_URL"] = args.redis_url
    os.environ["PEERS_NAMESPACE"] = args.namespace
    import app_dramatiq

    pool = ThreadPoolExecutor(ENQUEUE_THREADS) if ENQUEUE_THREADS > 1 else None

    stopping = threading.Event()

    def part(count: int, deadline: float) -> None:
        send = app_dramatiq.noop.send
        for i in range(count):
            if i % 200 == 0:
                drive_common.check_deadline(deadline)
                if stopping.is_set():
                    raise drive_common.DriverError("stopped while enqueueing")
            send()

    def teardown() -> None:
        stopping.set()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        app_dramatiq.broker.close()

    def enqueue(k: int, deadline: float) -> None:
        if pool is None:
            part(k, deadline)
            return
        share, extra = divmod(k, ENQUEUE_THREADS)
        futures = [pool.submit(part, share + (i < extra), deadline) for i in range(ENQUEUE_THREADS)]
        for future in futures:
            future.result()

    worker = [
        sys.executable, "-m", "dramatiq", "app_dramatiq",
        "--processes", str(args.processes),
        "--threads", str(THREADS),
        "--path", str(drive_common.HERE),
        "--worker-shutdown-timeout", "2000",
    ]  # fmt: skip
    settings = (
        f"RedisBroker, {args.processes} worker processes x {THREADS} threads; "
        f"send() from {ENQUEUE_THREADS} threads"
    )
    try:
        result = drive_common.run(
            name="dramatiq",
            version=f"{version('dramatiq')} (redis-py {version('redis')})",
            settings=settings,
            worker_argv=worker,
            send_hello=app_dramatiq.hello.send,
            enqueue=enqueue,
            args=args,
            teardown=teardown,
        )
    finally:
        stopping.set()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
    return 0 if result["rate"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
