"""The load generator against an ingest app, an executor and a watcher running in the test:
its report adds up (no timing assertions)."""

from __future__ import annotations

import asyncio
import collections
import io
import random
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from taskstream.services.cli.load import LoadOptions, make_plan, run_load
from taskstream.services.cli.load_track import Progress
from taskstream.services.executor.executor import Executor
from taskstream.services.watcher.watcher import Watcher
from taskstream.shared import config as config_mod
from taskstream.shared import db as db_mod
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.handlers import BUILTINS, Registry
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.conftest import SERVER_URL
from tests.helpers import api_client

MIX = dict(pct_noop=40, pct_flaky=25, pct_fail=25, pct_sleep=10, sleep_ms=5, flaky_attempts=2)


@asynccontextmanager
async def system(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> AsyncIterator[tuple[str, Callable[[], None]]]:
    """Ingest, one executor and one watcher until the block ends; yields ingest's base URL
    and a liveness check."""
    registry = Registry()
    for name, fn in BUILTINS.items():
        registry.register(name, fn)
    stop = asyncio.Event()
    executor = Executor(config, db, streams, registry, metrics, consumer="load-1")
    # The watcher publishes a retry before its transaction commits, so a fast executor can read
    # the entry, find the task not yet queued, and drop the delivery; the task then waits for
    # the repair pass (REPAIR_AFTER_MS, 30 s by default). A short repair keeps these tests about
    # the load generator's counts.
    quick_repair = config_mod.replace(config, repair_after_ms=200, repair_interval_ms=100)
    watcher = Watcher(quick_repair, db, streams, metrics)
    async with api_client(config, db, streams, metrics) as (client, _):
        tasks = [asyncio.create_task(executor.run(stop)), asyncio.create_task(watcher.run(stop))]

        def check() -> None:
            """Fail the load at once if the executor or the watcher died."""
            for task in tasks:
                if task.done():
                    task.result()
                    raise AssertionError("a service returned before it was stopped")

        try:
            yield str(client.make_url("")).rstrip("/"), check
        finally:
            stop.set()
            await asyncio.gather(*tasks)


def expected(opts: LoadOptions) -> collections.Counter[str]:
    return collections.Counter(t for t, _ in make_plan(opts, random.Random(opts.seed)))


async def test_report_adds_up_polling_postgres(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    async with system(config, db, streams, metrics) as (url, check):
        opts = LoadOptions(n=40, w=4, url=url, seed=11, timeout=30, **MIX)  # type: ignore[arg-type]
        report = await run_load(
            opts, db=db, concurrency=config.executor.worker_pool, progress=quiet(), check=check
        )

    planned = expected(opts)
    assert planned["always_fail"] and planned["flaky"]  # the seed draws both
    assert (report.requested, report.accepted, report.rejected) == (40, 40, 0)
    assert report.unfinished == 0 and report.cancelled == 0
    assert report.succeeded + report.dead == 40
    assert report.dead == planned["always_fail"]
    assert report.by_type["always_fail"] == {"dead": planned["always_fail"]}
    assert report.fail_pct == 100 * planned["always_fail"] / 40
    # flaky fails its first 2 attempts; always_fail uses all of its max_attempts.
    assert (
        report.retries
        == 2 * planned["flaky"] + (config.tasks.max_attempts - 1) * planned["always_fail"]
    )
    assert report.executors == 1 and report.concurrency == config.executor.worker_pool
    assert report.reaped == 0
    assert report.wait_p50_ms is not None and report.run_p95_ms is not None
    # In flight = claimed and not yet recorded: handlers running plus claimed entries waiting
    # for a handler (prefetch) plus outcomes waiting for their commit.
    assert 1 <= report.peak_inflight <= config.executor.worker_pool + config.executor.prefetch


async def test_report_adds_up_over_http_with_batches(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    async with system(config, db, streams, metrics) as (url, check):
        opts = LoadOptions(n=40, w=2, batch=15, url=url, seed=5, timeout=30, **MIX)  # type: ignore[arg-type]
        report = await run_load(opts, db=None, progress=quiet(), check=check)

    planned = expected(opts)
    assert report.route == "/v1/tasks/batch (15 per request)"
    assert (report.accepted, report.unfinished) == (40, 0)
    assert report.succeeded == 40 - planned["always_fail"]
    assert report.dead == planned["always_fail"]
    assert (
        report.retries
        == 2 * planned["flaky"] + (config.tasks.max_attempts - 1) * planned["always_fail"]
    )
    assert report.reaped is None and report.executors is None  # the API does not show them


NOOP = dict(pct_noop=100, pct_flaky=0, pct_fail=0, pct_sleep=0)


async def test_open_loop_submits_every_task(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    async with system(config, db, streams, metrics) as (url, check):
        opts = LoadOptions(rate=400, duration=0.05, url=url, timeout=30, **NOOP)  # type: ignore[arg-type]
        report = await run_load(opts, db=db, progress=quiet(), check=check)
    assert (report.requested, report.accepted, report.succeeded) == (20, 20, 20)


async def test_a_database_without_the_tasks_falls_back_to_http(
    config: Config, db: Database, streams: Streams, metrics: Metrics, template_db: str
) -> None:
    url = db_mod.with_database(SERVER_URL, f"ts_test_{uuid.uuid4().hex[:12]}")
    await db_mod.create_database(url, template=template_db)
    other = await Database.connect(url, min_size=1, max_size=2)
    try:
        async with system(config, db, streams, metrics) as (base, check):
            opts = LoadOptions(n=5, url=base, timeout=30, **NOOP)  # type: ignore[arg-type]
            report = await run_load(opts, db=other, progress=quiet(), check=check)
    finally:
        await other.close()
        await db_mod.drop_database(url)
    assert (report.accepted, report.succeeded, report.unfinished) == (5, 5, 0)
    assert report.executors is None  # the HTTP API does not show consumers


def quiet() -> Progress:
    return Progress(io.StringIO())
