"""Running a service: the command line, the event loop, signals, and the metrics listener.

The first SIGTERM or SIGINT sets the ``stop`` event and the service shuts down in its written
order; a second one cancels the service outright. A background task that dies takes the
service down with a non-zero exit, so its orchestrator restarts it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from taskstream.shared import config as config_mod
from taskstream.shared import logs, metrics, tracing
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.errors import StoreError, TaskstreamError
from taskstream.shared.keys import Keys
from taskstream.shared.streams import Streams
from taskstream.shared.supervise import backoff_s, pause

log = logging.getLogger(__name__)

Main = Callable[[asyncio.Event], Awaitable[None]]
Serve = Callable[..., Awaitable[None]]


def main(
    name: str,
    serve: Serve,
    argv: Sequence[str] | None = None,
    *,
    flags: Mapping[str, str] | None = None,
    check: Callable[[Config], None] | None = None,
) -> int:
    """A service's whole ``__main__``: parse ``flags`` (boolean options passed to ``serve`` as
    keywords), read the configuration (a bad value: one line naming it, exit 2), set up
    logging, metrics and tracing, and run ``serve(config, metrics, stop, **flags)`` until
    SIGTERM/SIGINT. ``check`` refuses a configuration this service cannot serve with
    (``ConfigError``: one line, exit 2). Returns the process exit code."""
    parser = argparse.ArgumentParser(prog=f"taskstream {name}")
    for flag, text in (flags or {}).items():
        parser.add_argument(f"--{flag}", action="store_true", help=text)
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        config = config_mod.load()
        if check is not None:
            check(config)
        tracing.setup(name)
    except TaskstreamError as exc:
        print(f"taskstream {name}: {exc}", file=sys.stderr)
        return 2
    logs.setup(config.service.log_level, config.service.log_format)
    instruments = metrics.setup(name)
    instruments.zero()
    options: dict[str, Any] = {flag: getattr(args, flag) for flag in flags or {}}

    async def service(stop: asyncio.Event) -> None:
        await serve(config, instruments, stop, **options)

    try:
        return run(service)
    finally:
        tracing.shutdown()


def run(main: Main) -> int:
    """Run ``main(stop)`` on uvloop (when installed) until it returns; the exit code."""
    try:
        import uvloop

        runner: Callable[..., None] = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a core dependency on Linux
        runner = asyncio.run
    try:
        runner(_supervise(main))
    except KeyboardInterrupt:
        return 130
    except Exception:
        log.exception("service failed", extra={"event": "service.failed"})
        return 1
    return 0


async def _supervise(main: Main) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    seen = 0

    def on_signal(signum: int) -> None:
        nonlocal seen
        seen += 1
        if seen == 1:
            log.info(
                "%s: shutting down (again to force)",
                signal.Signals(signum).name,
                extra={"event": "service.stopping"},
            )
            stop.set()
        else:
            log.warning("forced shutdown", extra={"event": "service.forced"})
            task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await main(stop)
    except Stopped:
        log.info("stopped before the stores answered", extra={"event": "service.stopped"})
    except asyncio.CancelledError:
        if seen < 2:
            raise


def consumer_name(configured: str) -> str:
    """The stable consumer name: configured (a container name), else ``<host>-<pid>``."""
    return configured or f"{socket.gethostname()}-{os.getpid()}"


class Health:
    """What a service's ``/readyz`` reports: its stores, once opened, both answering. Liveness
    (``/healthz``) is the process answering at all: a service waiting for a store is alive,
    not ready, and its orchestrator must not restart it for that."""

    def __init__(self) -> None:
        self.db: Database | None = None
        self.streams: Streams | None = None

    async def check(self) -> dict[str, str]:
        checks = {"postgres": "waiting to connect", "redis": "waiting to connect"}
        for name, store in (("postgres", self.db), ("redis", self.streams)):
            if store is None:
                continue
            try:
                await store.ping()
                checks[name] = "ok"
            except StoreError as exc:
                checks[name] = f"unavailable: {exc}"
        return checks


async def serve_metrics(addr: str, health: Health | None = None) -> web.AppRunner | None:
    """Serve ``/metrics``, ``/healthz`` and (with ``health``) ``/readyz`` on ``host:port``;
    None when ``addr`` is empty."""
    if not addr:
        return None
    host, _, port = addr.rpartition(":")

    async def scrape(request: web.Request) -> web.Response:
        return web.Response(body=metrics.prometheus_text(), content_type="text/plain")

    async def alive(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(request: web.Request) -> web.Response:
        checks = await health.check() if health is not None else {}
        ok = all(v == "ok" for v in checks.values())
        body = {"status": "ok" if ok else "unavailable", "checks": checks}
        return web.json_response(body, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/healthz", alive)
    app.router.add_get("/readyz", ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host or "0.0.0.0", int(port)).start()
    log.info("metrics on http://%s/metrics", addr, extra={"event": "service.metrics"})
    return runner


class Stopped(TaskstreamError):
    """Stopped (SIGTERM) while still waiting for a store: a clean exit."""


@contextlib.asynccontextmanager
async def stores(
    config: Config,
    stop: asyncio.Event,
    *,
    pool_min: int | None = None,
    health: Health | None = None,
) -> AsyncIterator[tuple[Database, Streams]]:
    """Open the Postgres pool and the Redis client of a service, waiting (with a backoff, and
    a log line per try) while Postgres is down, and close both on the way out (Redis first,
    the pool last). Raises ``Stopped`` if ``stop`` is set before Postgres answers."""
    cfg = config.stores
    failures = 0
    while True:
        try:
            db = await Database.connect(
                cfg.database_url,
                min_size=cfg.db_pool_min if pool_min is None else pool_min,
                max_size=cfg.db_pool_max,
            )
            break
        except StoreError as exc:
            failures += 1
            log.warning(
                "waiting for Postgres (%d): %s", failures, exc, extra={"event": "service.waiting"}
            )
            if await pause(stop, backoff_s(failures)):
                raise Stopped("stopped while waiting for Postgres") from None
    streams = Streams.connect(
        cfg.redis_url, Keys(cfg.namespace), timeout_s=cfg.redis_timeout_ms / 1000
    )
    if health is not None:
        health.db, health.streams = db, streams
    try:
        yield db, streams
    finally:
        if health is not None:
            health.db = health.streams = None
        await streams.close()
        await db.close()
