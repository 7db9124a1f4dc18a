"""The services as processes: the happy path over HTTP, and an ordered SIGTERM."""

from __future__ import annotations

import signal
import time
from typing import Any

import aiohttp
import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.system import System, free_port
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e


async def statuses(url: str) -> dict[str, str]:
    conn = await asyncpg.connect(url)
    try:
        return {str(r["id"]): r["status"] for r in await conn.fetch("SELECT id, status FROM tasks")}
    finally:
        await conn.close()


async def wait_http(base: str) -> None:
    async def up() -> bool:
        try:
            async with aiohttp.ClientSession() as s, s.get(f"{base}/healthz") as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False

    await wait_for(up, timeout=20)


async def post(base: str, path: str, body: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.post(f"{base}{path}", json=body) as r:
        return r.status, await r.json()


async def test_noop_posted_over_http_succeeds_within_a_second(
    system: System, database_url: str
) -> None:
    system.start("ingest")
    metrics_port = free_port()
    system.start("executor-1", METRICS_ADDR=f"127.0.0.1:{metrics_port}")
    await wait_http(system.url)
    # The second measures the pipeline, not how long a process takes to start.
    await wait_http(f"http://127.0.0.1:{metrics_port}")
    status, body = await post(system.url, "/v1/tasks", {"type": "noop", "payload": {"x": 1}})
    assert status == 201
    task_id = body["id"]
    posted = time.monotonic()

    async def succeeded() -> bool:
        async with aiohttp.ClientSession() as s, s.get(f"{system.url}/v1/tasks/{task_id}") as r:
            return bool((await r.json())["status"] == "succeeded")

    await wait_for(succeeded, timeout=10, every=0.01)
    assert time.monotonic() - posted < 1.0

    # The Go scheduler's route and bodies.
    go = {"type": "noop", "priority": "high", "payload": {}, "idempotency_key": "go-1"}
    status, body = await post(system.url, "/tasks", go)
    assert (status, body["status"]) == (202, "queued") and body["task_id"]
    status, again = await post(system.url, "/tasks", go)
    assert (status, again) == (200, {"task_id": body["task_id"], "status": "duplicate"})

    # Both services expose their metrics to a Prometheus scrape.
    ingest = await scrape(f"{system.url}/metrics")
    assert metric(ingest, "tasks_enqueued_total") == 2
    executor = await scrape(f"http://127.0.0.1:{metrics_port}/metrics")

    async def counted() -> bool:
        text = await scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        return metric(text, "tasks_succeeded_total") == 2

    await wait_for(counted, timeout=10)
    assert "task_run_seconds_bucket" in executor and "tasks_dequeued_total" in executor


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.status == 200
        return await r.text()


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of a metric's samples (Prometheus text format) whose labels include ``labels``."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


async def test_sigterm_finishes_in_flight_tasks_and_exits_zero(
    system: System, database_url: str
) -> None:
    system.start("ingest")
    await wait_http(system.url)
    tasks = [{"type": "recorded", "payload": {"ms": 800}} for _ in range(6)]
    status, body = await post(system.url, "/v1/tasks/batch", {"tasks": tasks})
    assert status == 200
    ids = [r["id"] for r in body["results"]]
    system.start("executor-1", WORKER_POOL="3", PREFETCH="3")

    await wait_for(lambda: _started(system, 3), timeout=20)
    system.signal("executor-1", signal.SIGTERM)
    assert system.wait("executor-1") == 0

    runs = system.runs()
    done = set(runs["done"])
    assert len(done) == 3 and set(runs["start"]) == done  # in-flight finished, none begun after
    states = await statuses(database_url)
    assert {states[i] for i in done} == {"succeeded"}
    assert {states[i] for i in ids if i not in done} == {"queued"}  # released, not lost

    # Nothing is pending without its commit: a second executor finishes the rest, once each.
    system.start("executor-2")

    async def all_succeeded() -> bool:
        return set((await statuses(database_url)).values()) == {"succeeded"}

    await wait_for(all_succeeded, timeout=20)
    assert all(n == 1 for n in system.runs()["done"].values())


async def _started(system: System, n: int) -> bool:
    return sum(system.runs()["start"].values()) >= n


async def test_delayed_tasks_start_no_earlier_than_asked_and_within_the_scan_interval(
    system: System, database_url: str
) -> None:
    interval_ms = int(system.env["WATCH_INTERVAL_MS"])
    system.start("ingest")
    system.start("watcher")
    system.start("executor-1")
    await wait_http(system.url)
    tasks = [{"type": "recorded", "delay_ms": 200 + 100 * i} for i in range(5)]
    status, _ = await post(system.url, "/v1/tasks/batch", {"tasks": tasks})
    assert status == 200

    async def all_done() -> bool:
        return set((await statuses(database_url)).values()) == {"succeeded"}

    await wait_for(all_done, timeout=20)
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT extract(epoch FROM queued_at - run_at) AS late,"
            " extract(epoch FROM started_at - run_at) AS start FROM tasks"
        )
    finally:
        await conn.close()
    assert len(rows) == 5
    for r in rows:
        assert r["start"] >= 0 and r["late"] >= 0  # never early
        # Released within one scan interval (plus the time a pass itself takes).
        assert r["late"] <= interval_ms / 1000 + 0.25, r["late"]


async def test_queue_gauges_agree_with_the_queues_view(
    system: System, database_url: str, namespace: str
) -> None:
    from taskstream.shared import ops
    from taskstream.shared.db import Database
    from taskstream.shared.keys import Keys
    from taskstream.shared.streams import Streams

    metrics_port = free_port()
    system.start("ingest")
    system.start("janitor", METRICS_ADDR=f"127.0.0.1:{metrics_port}", JANITOR_INTERVAL_MS="100")
    await wait_http(system.url)
    await wait_http(f"http://127.0.0.1:{metrics_port}")  # the janitor is up and serving
    tasks = [{"type": "noop", "priority": p} for p in ("high", "low", "low") for _ in range(3)]
    status, _ = await post(system.url, "/v1/tasks/batch", {"tasks": tasks})
    assert status == 200  # no executor runs: they stay queued

    db = await Database.connect(database_url, min_size=1, max_size=2)
    streams = Streams.connect(system.env["REDIS_URL"], Keys(namespace))
    try:
        view = {q.priority: q for q in (await ops.queues(db, streams)).queues}
    finally:
        await streams.close()
        await db.close()

    async def sampled() -> bool:
        text = await scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        return metric(text, "queue_depth", priority="low") == view["low"].lag

    await wait_for(sampled, timeout=10)
    text = await scrape(f"http://127.0.0.1:{metrics_port}/metrics")
    for priority in ("critical", "high", "default", "low"):
        q = view[priority]
        assert metric(text, "queue_depth", priority=priority) == q.lag
        assert metric(text, "stream_length", priority=priority) == q.length
        assert metric(text, "pending_entries", priority=priority) == q.pending
    assert view["low"].lag == 6 and view["high"].lag == 3
