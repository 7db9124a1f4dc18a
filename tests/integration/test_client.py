"""The Python client against a real ingest (in this process, on a real socket) over the real
Postgres and Redis, with an executor run in burst mode: round trips, batches, retries that
lose answers, pagination, typed errors, dead letters, and typed payloads on both sides."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest

import taskstream
from taskstream.services.executor.executor import Executor
from taskstream.shared import config as config_mod
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.handlers import BUILTINS, Context, Registry
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.helpers import api_client, query, wait_for
from tests.proxy import Proxy

FAST = taskstream.RetryPolicy(retries=4, base_s=0.01, max_s=0.05)


class Order(msgspec.Struct, frozen=True):
    order_id: int
    items: list[str]


def registry_with_typed(seen: list[Any]) -> tuple[Registry, taskstream.TaskDefinition[Any, Any]]:
    registry = Registry()
    for name, fn in BUILTINS.items():
        registry.register(name, fn)

    @taskstream.task("order.ship", max_attempts=4, registry=registry)
    async def ship(order: Order, ctx: Context) -> dict[str, int]:
        seen.append(order)
        return {"shipped": len(order.items)}

    return registry, ship


class Stack:
    """An ingest serving on a real port and an executor over the test's stores."""

    def __init__(self, url: str, executor: Executor, seen: list[Any], ship: Any) -> None:
        self.url = url
        self.executor = executor
        self.seen = seen
        self.ship = ship


@pytest.fixture
async def stack(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> AsyncIterator[Stack]:
    seen: list[Any] = []
    registry, ship = registry_with_typed(seen)
    async with api_client(config, db, streams, metrics) as (client, _):
        executor = Executor(config, db, streams, registry, metrics, consumer="client-test")
        yield Stack(str(client.make_url("")).rstrip("/"), executor, seen, ship)


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[taskstream.AsyncClient]:
    async with taskstream.AsyncClient(stack.url, retry=FAST) as c:
        yield c


class Counting(httpx.AsyncHTTPTransport):
    """The real transport, noting the status of every answer."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        self.statuses.append(response.status_code)
        return response


ten = range(10)


async def count(config: Config, sql: str = "SELECT count(*) FROM tasks", *args: Any) -> int:
    return int((await query(config.stores.database_url, sql, *args))[0][0])


async def test_submit_then_wait_while_an_executor_runs_it(
    stack: Stack, client: taskstream.AsyncClient, config: Config
) -> None:
    task = await client.submit("noop", {"hello": "world"}, priority="high")
    assert (
        task.status == "queued" and task.priority == "high" and task.payload == {"hello": "world"}
    )
    assert task.idempotency_key is not None and task.idempotency_key.startswith("ts-")
    waiting = asyncio.create_task(client.wait(task.id, timeout=20))
    assert await stack.executor.run_once() == 1
    done = await waiting
    assert done.id == task.id and done.status == "succeeded" and done.finished_at is not None
    raw = (await query(config.stores.database_url, "SELECT status FROM tasks"))[0]
    assert raw["status"] == "succeeded"


async def test_wait_raises_task_failed_with_the_error_and_times_out(
    stack: Stack, client: taskstream.AsyncClient
) -> None:
    dead = await client.submit("always_fail", max_attempts=1)
    await stack.executor.run_once()
    with pytest.raises(taskstream.TaskFailed) as caught:
        await client.wait(dead.id, timeout=10)
    assert caught.value.task.status == "dead"
    assert caught.value.error is not None and caught.value.error.type == "AlwaysFailError"
    later = await client.submit("noop", delay_ms=60_000)
    with pytest.raises(taskstream.WaitTimeout) as timed_out:
        await client.wait(later.id, timeout=0.3)
    assert timed_out.value.task.status == "scheduled"
    cancelled = await client.cancel(later.id)
    assert cancelled.status == "cancelled"
    with pytest.raises(taskstream.TaskCancelled):
        await client.wait(later.id, timeout=5)


async def test_submit_many_chunks_keeps_order_and_per_task_errors(
    stack: Stack, config: Config
) -> None:
    items: list[Any] = [{"type": "noop", "payload": {"n": n}} for n in range(10)]
    items[3]["priority"] = "urgent"  # refused by the API
    items[6]["max_attempts"] = 0  # refused by the API
    items[8] = {"type": "noop", "payload": {"bad": object()}}  # refused before sending
    async with taskstream.AsyncClient(stack.url, retry=FAST, batch_size=4) as c:
        results = await c.submit_many(items)
    assert len(results) == 10
    errors = {n: r for n, r in enumerate(results) if isinstance(r, taskstream.ApiError)}
    assert sorted(errors) == [3, 6, 8]
    assert errors[3].field == "tasks[3].priority" and errors[6].field == "tasks[6].max_attempts"
    assert isinstance(errors[3], taskstream.ValidationError)
    created = [r for r in results if isinstance(r, taskstream.Task)]
    assert [t.payload["n"] for t in created] == [0, 1, 2, 4, 5, 7, 9]
    assert await count(config) == 7


async def test_submit_many_splits_chunks_over_the_servers_batch_limit(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    small = config_mod.replace(config, batch_max_tasks=3)
    async with api_client(small, db, streams, metrics) as (server, _):
        url = str(server.make_url("")).rstrip("/")
        async with taskstream.AsyncClient(url, retry=FAST, batch_size=10) as c:
            results = await c.submit_many(
                [{"type": "noop", "payload": {"n": n}} for n in range(10)]
            )
    assert [r.payload["n"] for r in results if isinstance(r, taskstream.Task)] == list(range(10))
    assert await count(config) == 10


async def test_retries_after_lost_answers_create_no_duplicates(
    stack: Stack, config: Config
) -> None:
    port = int(stack.url.rsplit(":", 1)[1])
    async with Proxy("127.0.0.1", port) as proxy:
        url = f"http://127.0.0.1:{proxy.url_port}"
        async with taskstream.AsyncClient(url, retry=FAST, batch_size=5) as c:
            proxy.drop_answers(2)  # the task is committed twice over, its answer lost each time
            task = await c.submit("noop", {"once": True})
            assert proxy.dropped == 2
            proxy.drop_answers(3)  # the first chunk's answer, then the second's twice
            results = await c.submit_many(
                [{"type": "noop", "payload": {"n": n}} for n in range(10)]
            )
            assert proxy.dropped == 5
    assert all(isinstance(r, taskstream.Task) for r in results)
    assert await count(config) == 11
    rows = await query(config.stores.database_url, "SELECT id FROM tasks WHERE payload = $1",
                       '{"once": true}')  # fmt: skip
    assert [r["id"] for r in rows] == [task.id]
    assert len({r.id for r in results if isinstance(r, taskstream.Task)}) == 10


async def test_a_client_waits_out_a_store_outage_without_duplicates(
    stack: Stack, config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    """Ingest answers 503 while Postgres is unreachable; the client's retries span it."""
    async with Proxy.to(config.stores.database_url) as pg_proxy:
        through = config_mod.replace(config, database_url=pg_proxy.url(config.stores.database_url))
        outage_db = await Database.connect(through.stores.database_url, min_size=0, max_size=2)
        try:
            async with api_client(through, outage_db, streams, metrics) as (server, _):
                url = str(server.make_url("")).rstrip("/")
                await pg_proxy.down()
                policy = taskstream.RetryPolicy(retries=30, base_s=0.05, max_s=0.1)
                counting = Counting()
                async with taskstream.AsyncClient(
                    url, retry=policy, timeout=5, transport=counting
                ) as c:
                    submitting = asyncio.create_task(c.submit("noop", {"outage": 1}))

                    async def refused_twice() -> bool:
                        return counting.statuses.count(503) >= 2

                    await wait_for(refused_twice)
                    assert not submitting.done()
                    await pg_proxy.up()
                    task = await submitting
        finally:
            await outage_db.close()
    assert task.status == "queued"
    assert await count(config) == 1


async def test_list_pages_through_every_task_newest_first_with_filters(
    stack: Stack, client: taskstream.AsyncClient
) -> None:
    results = await client.submit_many(
        [{"type": "noop" if n % 2 else "sleeper", "payload": {"n": n}} for n in range(25)]
    )
    ids = [r.id for r in results if isinstance(r, taskstream.Task)]
    listed = [t.id async for t in client.list(page_size=7)]
    assert listed == ids[::-1]
    sleepers = [t async for t in client.list(type="sleeper", status="queued", page_size=4)]
    assert len(sleepers) == 13 and {t.type for t in sleepers} == {"sleeper"}
    with taskstream.Client(client.url, retry=FAST) as sync:
        assert await asyncio.to_thread(lambda: [t.id for t in sync.list(page_size=10)]) == listed


async def test_api_errors_arrive_typed(stack: Stack, client: taskstream.AsyncClient) -> None:
    with pytest.raises(taskstream.NotFound) as not_found:
        await client.get(uuid.uuid4())
    assert not_found.value.status == 404 and not_found.value.code == "not_found"
    with pytest.raises(taskstream.ValidationError) as invalid:
        await client.submit("noop", max_attempts=0)
    assert invalid.value.status == 422 and invalid.value.field == "max_attempts"
    await client.submit("noop", {"a": 1}, idempotency_key="order-1")
    again = await client.submit("noop", {"a": 1}, idempotency_key="order-1")
    assert again.payload == {"a": 1}
    with pytest.raises(taskstream.Conflict) as conflict:
        await client.submit("noop", {"a": 2}, idempotency_key="order-1")
    assert conflict.value.code == "idempotency_conflict"
    with pytest.raises(taskstream.BadRequest) as bad:
        [t async for t in client.list(status="sleeping")]
    assert bad.value.field == "status"
    await stack.executor.run_once()
    with pytest.raises(taskstream.Conflict) as finished:
        await client.cancel(again.id)
    assert finished.value.code == "not_cancellable"


async def test_dead_letters_list_replay_and_purge(
    stack: Stack, client: taskstream.AsyncClient
) -> None:
    first = await client.submit("always_fail", {"n": 1}, max_attempts=1, priority="high")
    second = await client.submit("always_fail", {"n": 2}, max_attempts=1)
    await stack.executor.run_once()
    dead = [d async for d in client.dlq.list(page_size=1)]
    assert {d.task_id for d in dead} == {first.id, second.id}
    assert [d.task_id async for d in client.dlq.list(priority="high")] == [first.id]
    dry = await client.dlq.replay([first.id], dry_run=True)
    assert dry.dry_run and dry.count == 1
    assert (await client.get(first.id)).status == "dead"
    replayed = await client.dlq.replay(priority="high")
    assert replayed.count == 1 and (await client.get(first.id)).status == "queued"
    purged = await client.dlq.purge(second.id)
    assert purged.count == 1
    with pytest.raises(taskstream.NotFound):
        await client.dlq.purge(second.id)
    assert [d.task_id async for d in client.dlq.list()] == []


async def test_a_typed_payload_is_validated_on_submit_and_decoded_in_the_executor(
    stack: Stack, client: taskstream.AsyncClient, config: Config
) -> None:
    task = await stack.ship.submit(client, Order(order_id=1, items=["a", "b"]))
    assert task.max_attempts == 4  # the definition's default
    with pytest.raises(taskstream.ValidationError) as refused:
        await stack.ship.submit(client, {"order_id": "one", "items": []})
    assert refused.value.field == "payload.order_id"
    # Past the producer's check (a raw submit), a bad payload fails in the executor at once.
    bad = await client.submit("order.ship", {"order_id": 2})
    await stack.executor.run_once()
    assert stack.seen == [Order(order_id=1, items=["a", "b"])]
    assert (await client.wait(task.id, timeout=5)).status == "succeeded"
    with pytest.raises(taskstream.TaskFailed) as failed:
        await client.wait(bad.id, timeout=5)
    assert failed.value.error is not None and failed.value.error.type == "PayloadError"
    assert "items" in failed.value.error.message
    assert failed.value.task.attempt == 1  # not retried though 4 attempts were allowed
    assert await count(config) == 2


async def test_result_is_what_the_api_shows(stack: Stack, client: taskstream.AsyncClient) -> None:
    """Servers that store results show them under ``result``; older ones send none (None)."""
    task = await stack.ship.submit(client, Order(order_id=3, items=["x"]))
    await stack.executor.run_once()
    done = await client.wait(task.id, timeout=5)
    async with taskstream.AsyncClient(stack.url) as plain:
        raw = await plain._http.get(f"/v1/tasks/{task.id}")
    shown = raw.json()
    assert done.result == shown.get("result")
    if "result" in shown:
        assert done.result == {"shipped": 1}


async def test_pages_queues_and_pending_entries(
    client: taskstream.AsyncClient, stack: Stack, streams: Streams
) -> None:
    await streams.ensure_groups()
    made = [await client.submit("noop", {"n": i}, priority="high") for i in range(3)]
    first, cursor = await client.list_page(priority="high", limit=2)
    assert [t.id for t in first] == [made[2].id, made[1].id] and cursor is not None
    rest, end = await client.list_page(priority="high", limit=2, cursor=cursor)
    assert [t.id for t in rest] == [made[0].id] and end is None
    await streams.read("client-reader", {"high": 1})
    [high] = [q for q in (await client.queues()).queues if q.priority == "high"]
    assert (high.pending, high.lag) == (1, 2)
    [entry] = (await client.pending("high")).entries
    assert (entry.consumer, entry.task_id) == ("client-reader", made[0].id)
    dead = await client.submit("always_fail", max_attempts=1)
    await stack.executor.run_once()
    letters, more = await client.dlq.list_page(type="always_fail", limit=5)
    assert [d.task_id for d in letters] == [dead.id] and more is None


async def test_the_sync_client_reads_pages_and_queues_too(stack: Stack) -> None:
    def use() -> None:  # in a thread: the ingest answers on this test's event loop
        with taskstream.Client(stack.url, retry=FAST) as c:
            c.submit("noop")
            tasks, _ = c.list_page(limit=1)
            assert len(tasks) == 1
            assert c.queues().queues[0].priority == "critical"
            assert c.pending("low").entries == []
            assert c.dlq.list_page(limit=1) == ([], None)

    await asyncio.to_thread(use)


async def test_schedules_through_the_client(client: taskstream.AsyncClient, stack: Stack) -> None:
    spec = {"task": {"type": "noop"}, "every": "1h"}
    made = await client.schedules.put("hourly", spec)
    assert (made.change, made.state, made.every) == ("created", "active", "1h")
    assert (await client.schedules.put("hourly", spec)).change == "unchanged"
    assert (await client.schedules.pause("hourly", "quiet")).note == "quiet"
    assert [s.name for s in (await client.schedules.list()).schedules] == ["hourly"]
    run = await client.schedules.trigger("hourly")
    assert (await client.get(run.task_id)).status == "queued"
    assert (await client.schedules.resume("hourly")).state == "active"
    assert (await client.schedules.get("hourly")).counts.triggered == 1
    with pytest.raises(taskstream.NotFound):
        await client.schedules.get("nothing-here")
    with pytest.raises(taskstream.ValidationError) as bad:
        await client.schedules.get("no spaces")
    assert bad.value.field == "name"
