"""The ingest HTTP API against the real Postgres and Redis.

Each test gets its own database and Redis namespace (see conftest). Rejected requests are
checked to have stored nothing, straight in Postgres and in the streams.
"""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from taskstream.services.ingest import openapi
from taskstream.services.ingest.app import build_app
from taskstream.services.ingest.publisher import Publisher
from taskstream.shared import config as config_mod
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.domain import PRIORITIES, Task
from taskstream.shared.keys import Keys
from taskstream.shared.metrics import Metrics
from taskstream.shared.models import TaskList
from taskstream.shared.streams import Streams
from tests.helpers import api_client, wait_for
from tests.proxy import Proxy

Client = TestClient[Any, Any]


@pytest.fixture
async def api(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> AsyncIterator[tuple[Client, Publisher]]:
    async with api_client(config, db, streams, metrics) as pair:
        yield pair


@pytest.fixture
def client(api: tuple[Client, Publisher]) -> Client:
    return api[0]


@pytest.fixture
async def pg(config: Config) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the test's database, to check what was stored."""
    conn = await asyncpg.connect(config.stores.database_url)
    yield conn
    await conn.close()


async def count(pg: asyncpg.Connection, table: str = "tasks") -> int:
    return int(await pg.fetchval(f"SELECT count(*) FROM {table}"))


async def stream_total(streams: Streams) -> int:
    return sum((await streams.lengths()).values())


async def error_of(resp: Any, status: int) -> dict[str, Any]:
    """The ``error`` object of a JSON error response with ``status``."""
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert set(body) == {"error"}
    assert {"code", "message"} <= set(body["error"]) <= {"code", "message", "field"}
    return dict(body["error"])


async def created(client: Client, **body: Any) -> dict[str, Any]:
    resp = await client.post("/v1/tasks", json={"type": "t", **body})
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def nothing_stored(pg: asyncpg.Connection, streams: Streams) -> bool:
    return (
        await count(pg) == 0
        and await count(pg, "idempotency_keys") == 0
        and (await stream_total(streams) == 0)
    )


# Validation: every error names its field, and stores nothing


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"payload": {}}, "type"),
        ({"type": "not a valid type!"}, "type"),
        ({"type": "t", "colour": "red"}, "colour"),
        ({"type": "t", "max_attempts": "x"}, "max_attempts"),
        ({"type": "t", "priority": "urgent"}, "priority"),
        ({"type": "t", "timeout_ms": 0}, "timeout_ms"),
        ({"type": "t", "delay_ms": -1}, "delay_ms"),
        ({"type": "t", "run_at": "2030-01-01T00:00:00"}, "run_at"),
        ({"type": "t", "run_at": "2030-01-01T00:00:00Z", "delay_ms": 5}, "delay_ms"),
        ({"type": "t", "backoff": {"base_ms": -1}}, "backoff.base_ms"),
        ({"type": "t", "idempotency_key": ""}, "idempotency_key"),
    ],
)
async def test_invalid_task_is_422_naming_the_field_and_stores_nothing(
    client: Client, pg: asyncpg.Connection, streams: Streams, body: dict[str, Any], field: str
) -> None:
    error = await error_of(await client.post("/v1/tasks", json=body), 422)
    assert error["code"] == "invalid"
    assert error["field"] == field
    assert await nothing_stored(pg, streams)


@pytest.mark.parametrize("path", ["/v1/tasks", "/v1/tasks/batch", "/tasks"])
async def test_malformed_json_is_400_invalid_json(
    client: Client, pg: asyncpg.Connection, streams: Streams, path: str
) -> None:
    resp = await client.post(path, data=b"{not json", headers={"Content-Type": "application/json"})
    error = await error_of(resp, 400)
    assert error["code"] == "invalid_json"
    assert await nothing_stored(pg, streams)


@pytest.mark.parametrize("path", ["/v1/tasks", "/v1/tasks/batch", "/tasks"])
async def test_body_over_max_body_bytes_is_413(
    config: Config,
    db: Database,
    streams: Streams,
    metrics: Metrics,
    pg: asyncpg.Connection,
    path: str,
) -> None:
    small = config_mod.replace(config, max_body_bytes=1024)
    task = {"type": "t", "payload": {"blob": "x" * 2048}}
    body = {"tasks": [task]} if path.endswith("batch") else task
    async with api_client(small, db, streams, metrics) as (client, _):
        error = await error_of(await client.post(path, json=body), 413)
    assert error["code"] == "too_large"
    assert await nothing_stored(pg, streams)


async def test_batch_over_batch_max_tasks_is_413_naming_tasks(
    config: Config,
    db: Database,
    streams: Streams,
    metrics: Metrics,
    pg: asyncpg.Connection,
) -> None:
    small = config_mod.replace(config, batch_max_tasks=3)
    async with api_client(small, db, streams, metrics) as (client, _):
        body = {"tasks": [{"type": "t"} for _ in range(4)]}
        error = await error_of(await client.post("/v1/tasks/batch", json=body), 413)
        assert (error["code"], error["field"]) == ("batch_too_large", "tasks")
        ok = await client.post("/v1/tasks/batch", json={"tasks": body["tasks"][:3]})
        assert ok.status == 200
    assert await count(pg) == 3


@pytest.mark.parametrize("body", [{"tasks": 5}, {"items": []}, [1, 2]])
async def test_batch_of_the_wrong_shape_is_422_naming_tasks(
    client: Client, pg: asyncpg.Connection, streams: Streams, body: Any
) -> None:
    error = await error_of(await client.post("/v1/tasks/batch", json=body), 422)
    assert error["field"] == "tasks"
    assert await nothing_stored(pg, streams)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/tasks/not-a-uuid"), ("POST", "/v1/tasks/12345/cancel")],
)
async def test_a_path_without_a_task_id_is_no_such_route(
    client: Client, method: str, path: str
) -> None:
    # A task id in a path is a UUID: /v1/tasks/batch can never be read as one.
    error = await error_of(await client.request(method, path), 404)
    assert error["code"] == "not_found"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "bogus"}, "status"),
        ({"priority": "urgent"}, "priority"),
        ({"limit": "x"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"cursor": "garbage"}, "cursor"),
        ({"cursor": "%%%"}, "cursor"),
    ],
)
async def test_bad_list_query_is_400_naming_the_parameter(
    client: Client, query: dict[str, str], field: str
) -> None:
    error = await error_of(await client.get("/v1/tasks", params=query), 400)
    assert (error["code"], error["field"]) == ("invalid", field)


async def test_unknown_route_is_404_json(client: Client) -> None:
    error = await error_of(await client.get("/v2/nothing-here"), 404)
    assert error["code"] == "not_found"


async def test_wrong_method_is_405_json(client: Client) -> None:
    error = await error_of(await client.delete("/v1/tasks"), 405)
    assert error["code"] == "method_not_allowed"


# Creating a task


async def test_create_commits_the_task_and_publishes_one_entry(
    client: Client, pg: asyncpg.Connection, streams: Streams
) -> None:
    body = {"type": "email.send", "payload": {"to": "a@example.com"}, "priority": "high"}
    resp = await client.post("/v1/tasks", json=body)
    assert resp.status == 201, await resp.text()
    view = msgspec.json.decode(await resp.read(), type=Task)
    assert view.status == "queued"
    assert (view.type, view.priority, view.attempt) == ("email.send", "high", 1)
    assert view.payload == {"to": "a@example.com"}

    row = await pg.fetchrow("SELECT status, type, priority FROM tasks WHERE id = $1", view.id)
    assert row is not None and tuple(row) == ("queued", "email.send", "high")
    assert await count(pg) == 1

    entries = await streams.entries("high")
    assert [fields for _, fields in entries] == [{"t": str(view.id), "a": "1"}]
    assert await stream_total(streams) == 1


async def test_delayed_task_is_scheduled_and_not_published(
    client: Client, pg: asyncpg.Connection, streams: Streams
) -> None:
    task = await created(client, delay_ms=60_000)
    assert task["status"] == "scheduled"
    due = await pg.fetch("SELECT task_id, kind FROM due")
    assert [(str(r["task_id"]), r["kind"]) for r in due] == [(task["id"], "delayed")]
    assert await stream_total(streams) == 0


# Idempotency


async def test_same_key_same_body_returns_the_original_task(
    client: Client, pg: asyncpg.Connection, streams: Streams
) -> None:
    first = await client.post(
        "/v1/tasks", json={"type": "t", "payload": {"a": 1, "b": 2}, "idempotency_key": "k1"}
    )
    assert first.status == 201
    # Same meaning, different bytes (key order): still a replay.
    again = await client.post(
        "/v1/tasks", json={"idempotency_key": "k1", "payload": {"b": 2, "a": 1}, "type": "t"}
    )
    assert again.status == 200
    assert await again.json() == await first.json()
    assert await count(pg) == 1
    assert await stream_total(streams) == 1


async def test_same_key_different_body_is_409_conflict(
    client: Client, pg: asyncpg.Connection, streams: Streams
) -> None:
    await created(client, payload={"n": 1}, idempotency_key="k1")
    resp = await client.post(
        "/v1/tasks", json={"type": "t", "payload": {"n": 2}, "idempotency_key": "k1"}
    )
    error = await error_of(resp, 409)
    assert (error["code"], error["field"]) == ("idempotency_conflict", "idempotency_key")
    assert await count(pg) == 1
    assert await stream_total(streams) == 1


async def test_concurrent_requests_with_one_key_create_one_task(
    client: Client, pg: asyncpg.Connection, streams: Streams
) -> None:
    body = {"type": "t", "payload": {"n": 1}, "idempotency_key": "same"}
    responses = await asyncio.gather(*(client.post("/v1/tasks", json=body) for _ in range(50)))
    statuses = collections.Counter(r.status for r in responses)
    assert statuses == {201: 1, 200: 49}
    ids = {(await r.json())["id"] for r in responses}
    assert len(ids) == 1
    assert await count(pg) == 1
    assert await stream_total(streams) == 1


async def test_concurrent_requests_with_one_key_and_different_bodies(
    client: Client, pg: asyncpg.Connection, streams: Streams
) -> None:
    bodies = [{"type": "t", "payload": {"n": i % 2}, "idempotency_key": "same"} for i in range(50)]
    responses = await asyncio.gather(*(client.post("/v1/tasks", json=b) for b in bodies))
    statuses = collections.Counter(r.status for r in responses)
    assert statuses[201] == 1
    assert set(statuses) <= {201, 200, 409}, statuses
    winner = next(b for b, r in zip(bodies, responses, strict=True) if r.status == 201)
    for b, r in zip(bodies, responses, strict=True):
        # A replay of the winner's body gets the task; the other body is a conflict.
        assert r.status in ((200, 201) if b == winner else (409,))
    assert statuses[200] == sum(b == winner for b in bodies) - 1
    assert await count(pg) == 1
    assert await stream_total(streams) == 1


# The Go scheduler's POST /tasks


async def test_go_route_answers_as_the_go_scheduler_did(
    client: Client, pg: asyncpg.Connection, streams: Streams
) -> None:
    body = {"type": "report", "priority": "low", "payload": {"x": 1}, "idempotency_key": "g1"}
    first = await client.post("/tasks", json=body)
    assert first.status == 202
    queued = await first.json()
    assert queued == {"task_id": queued["task_id"], "status": "queued"}
    uuid.UUID(queued["task_id"])

    again = await client.post("/tasks", json=body)
    assert again.status == 200
    assert await again.json() == {"task_id": queued["task_id"], "status": "duplicate"}
    assert await count(pg) == 1
    assert [f for _, f in await streams.entries("low")] == [{"t": queued["task_id"], "a": "1"}]


async def test_go_max_retries_means_attempts_after_the_first(client: Client) -> None:
    resp = await client.post("/tasks", json={"type": "t", "priority": "default", "max_retries": 2})
    assert resp.status == 202
    task_id = (await resp.json())["task_id"]
    view = await (await client.get(f"/v1/tasks/{task_id}")).json()
    assert view["max_attempts"] == 3


async def test_go_route_rejects_a_bad_body_naming_the_field(
    client: Client, pg: asyncpg.Connection
) -> None:
    error = await error_of(await client.post("/tasks", json={"priority": "high"}), 422)
    assert error["field"] == "type"
    assert await count(pg) == 0


# Batches


async def test_batch_gives_one_result_per_task_in_order(
    client: Client, pg: asyncpg.Connection, streams: Streams
) -> None:
    tasks: list[Any] = [
        {"type": "ok.one"},
        {"type": "bad type"},
        {"type": "ok.two", "priority": "low"},
        {"type": "t", "unknown": 1},
        5,
        {"type": "t", "backoff": {"max_ms": -1}},
        {"type": "t", "run_at": "2030-01-01T00:00:00Z", "delay_ms": 1},
    ]
    resp = await client.post("/v1/tasks/batch", json={"tasks": tasks})
    assert resp.status == 200, await resp.text()
    results = (await resp.json())["results"]
    assert len(results) == len(tasks)

    ok = {0: "ok.one", 2: "ok.two"}
    for i, type_ in ok.items():
        assert results[i]["created"] is True
        assert results[i]["status"] == "queued"
        assert results[i]["task"]["type"] == type_
    fields = {i: r["error"]["field"] for i, r in enumerate(results) if "error" in r}
    assert fields == {
        1: "tasks[1].type",
        3: "tasks[3].unknown",
        4: "tasks[4]",
        5: "tasks[5].backoff.max_ms",
        6: "tasks[6].delay_ms",
    }

    stored = {r["id"]: r["type"] for r in await pg.fetch("SELECT id::text, type FROM tasks")}
    assert stored == {results[i]["id"]: type_ for i, type_ in ok.items()}
    assert [f["t"] for _, f in await streams.entries("default")] == [results[0]["id"]]
    assert [f["t"] for _, f in await streams.entries("low")] == [results[2]["id"]]


async def test_empty_batch_is_fine(client: Client, pg: asyncpg.Connection) -> None:
    resp = await client.post("/v1/tasks/batch", json={"tasks": []})
    assert resp.status == 200
    assert await resp.json() == {"results": []}
    assert await count(pg) == 0


async def test_duplicate_key_inside_one_batch_follows_the_idempotency_rules(
    client: Client, pg: asyncpg.Connection, streams: Streams
) -> None:
    one = {"type": "t", "payload": {"n": 1}, "idempotency_key": "k"}
    two = {"type": "t", "payload": {"n": 2}, "idempotency_key": "k"}
    resp = await client.post("/v1/tasks/batch", json={"tasks": [one, two, one]})
    results = (await resp.json())["results"]
    assert results[0]["created"] is True
    conflict = results[1]["error"]
    assert (conflict["code"], conflict["field"]) == (
        "idempotency_conflict",
        "tasks[1].idempotency_key",
    )
    assert results[2]["created"] is False
    assert results[2]["id"] == results[0]["id"]
    assert await count(pg) == 1
    assert await stream_total(streams) == 1


async def test_batch_replaying_an_earlier_key(
    client: Client, pg: asyncpg.Connection, streams: Streams
) -> None:
    original = await created(client, payload={"n": 1}, idempotency_key="k")
    other = {"type": "t", "payload": {"n": 2}, "idempotency_key": "k"}
    same = {"type": "t", "payload": {"n": 1}, "idempotency_key": "k"}
    resp = await client.post("/v1/tasks/batch", json={"tasks": [other, same]})
    results = (await resp.json())["results"]
    assert results[0]["error"]["field"] == "tasks[0].idempotency_key"
    assert (results[1]["id"], results[1]["created"]) == (original["id"], False)
    assert await count(pg) == 1
    assert await stream_total(streams) == 1


# Reading, listing and cancelling


async def test_get_task_and_404_for_an_unknown_id(client: Client) -> None:
    task = await created(client, payload={"k": "v"})
    resp = await client.get(f"/v1/tasks/{task['id']}")
    assert resp.status == 200
    assert await resp.json() == task
    error = await error_of(await client.get(f"/v1/tasks/{uuid.uuid4()}"), 404)
    assert error["code"] == "not_found"


async def list_ids(client: Client, **query: str) -> list[str]:
    resp = await client.get("/v1/tasks", params=query)
    assert resp.status == 200, await resp.text()
    return [t["id"] for t in (await resp.json())["tasks"]]


async def test_list_filters_by_status_type_and_priority(client: Client) -> None:
    a = await created(client, type="mail", priority="high")
    b = await created(client, type="mail", priority="low")
    c = await created(client, type="report", priority="high")
    d = await created(client, type="report", delay_ms=60_000)
    assert (await client.post(f"/v1/tasks/{b['id']}/cancel")).status == 200

    assert await list_ids(client) == [d["id"], c["id"], b["id"], a["id"]]
    assert await list_ids(client, type="mail") == [b["id"], a["id"]]
    assert await list_ids(client, priority="high") == [c["id"], a["id"]]
    assert await list_ids(client, status="cancelled") == [b["id"]]
    assert await list_ids(client, status="scheduled") == [d["id"]]
    assert await list_ids(client, status="queued", type="report") == [c["id"]]
    assert await list_ids(client, type="mail", priority="high", status="queued") == [a["id"]]
    assert await list_ids(client, type="nothing") == []


async def test_cursor_pagination_walks_every_task_once_newest_first(client: Client) -> None:
    for i in range(4):
        await created(client, payload={"i": i})
    # Tasks of one batch share created_at; ids are time-ordered, so they are the order.
    resp = await client.post("/v1/tasks/batch", json={"tasks": [{"type": "t"}] * 5})
    assert resp.status == 200
    for i in range(3):
        await created(client, payload={"j": i})

    walked: list[Task] = []
    pages = 0
    query = {"limit": "3"}
    while True:
        resp = await client.get("/v1/tasks", params=query)
        assert resp.status == 200, await resp.text()
        page = msgspec.json.decode(await resp.read(), type=TaskList)
        pages += 1
        assert len(page.tasks) <= 3
        walked.extend(page.tasks)
        if page.next_cursor is None:
            break
        query = {"limit": "3", "cursor": page.next_cursor}

    assert len(walked) == 12
    assert len({t.id for t in walked}) == 12
    assert walked == sorted(walked, key=lambda t: t.id, reverse=True)
    assert [t.created_at for t in walked] == sorted((t.created_at for t in walked), reverse=True)
    assert [t.payload for t in walked][:3] == [{"j": 2}, {"j": 1}, {"j": 0}]
    assert pages in (4, 5)  # a full last page may be followed by an empty one
    everything = msgspec.json.decode(
        await (await client.get("/v1/tasks", params={"limit": "500"})).read(), type=TaskList
    )
    assert [t.id for t in everything.tasks] == [t.id for t in walked]
    assert everything.next_cursor is None


async def test_cancel_a_queued_task_then_again_then_unknown(
    client: Client, pg: asyncpg.Connection
) -> None:
    task = await created(client)
    resp = await client.post(f"/v1/tasks/{task['id']}/cancel")
    assert resp.status == 200
    cancelled = await resp.json()
    assert (cancelled["id"], cancelled["status"]) == (task["id"], "cancelled")
    assert cancelled["finished_at"] is not None
    status = await pg.fetchval("SELECT status FROM tasks WHERE id = $1", uuid.UUID(task["id"]))
    assert status == "cancelled"

    error = await error_of(await client.post(f"/v1/tasks/{task['id']}/cancel"), 409)
    assert error["code"] == "not_cancellable"
    error = await error_of(await client.post(f"/v1/tasks/{uuid.uuid4()}/cancel"), 404)
    assert error["code"] == "not_found"


async def test_cancel_a_scheduled_task_drops_its_due_row(
    client: Client, pg: asyncpg.Connection
) -> None:
    task = await created(client, delay_ms=60_000)
    assert await count(pg, "due") == 1
    resp = await client.post(f"/v1/tasks/{task['id']}/cancel")
    assert (resp.status, (await resp.json())["status"]) == (200, "cancelled")
    assert await count(pg, "due") == 0


# Health, metrics and the OpenAPI document


async def test_healthz_and_readyz_with_both_stores_up(client: Client) -> None:
    resp = await client.get("/healthz")
    assert (resp.status, await resp.json()) == (200, {"status": "ok"})
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok", "checks": {"postgres": "ok", "redis": "ok"}}


async def test_metrics_are_served_as_text(client: Client) -> None:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"


async def test_openapi_json_is_the_spec(client: Client) -> None:
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    assert await resp.json() == openapi.spec()


# A store goes away


@pytest.fixture
async def pg_proxy(config: Config) -> AsyncIterator[Proxy]:
    async with Proxy.to(config.stores.database_url) as proxy:
        yield proxy


@pytest.fixture
async def redis_proxy(config: Config) -> AsyncIterator[Proxy]:
    async with Proxy.to(config.stores.redis_url) as proxy:
        yield proxy


async def test_postgres_down_at_ingest_is_503_and_stores_nothing(
    config: Config,
    streams: Streams,
    metrics: Metrics,
    pg: asyncpg.Connection,
    pg_proxy: Proxy,
) -> None:
    proxied = await Database.connect(
        pg_proxy.url(config.stores.database_url), min_size=1, max_size=2
    )
    try:
        async with api_client(config, proxied, streams, metrics) as (client, _):
            await created(client)  # the pool holds a live connection through the proxy
            await pg_proxy.down()

            resp = await client.post("/v1/tasks", json={"type": "t", "idempotency_key": "k"})
            error = await error_of(resp, 503)
            assert error["code"] == "unavailable"
            assert resp.headers["Retry-After"] == "1"
            assert await count(pg) == 1
            assert await count(pg, "idempotency_keys") == 0
            assert await stream_total(streams) == 1

            resp = await client.get("/readyz")
            assert resp.status == 503
            checks = (await resp.json())["checks"]
            assert checks["redis"] == "ok"
            assert checks["postgres"].startswith("unavailable")

            await pg_proxy.up()
            await created(client, idempotency_key="k")  # the pool reconnects
            assert (await client.get("/readyz")).status == 200
            assert await count(pg) == 2
    finally:
        await proxied.close()


async def test_redis_down_at_ingest_accepts_and_publishes_later(
    config: Config,
    db: Database,
    streams: Streams,
    metrics: Metrics,
    pg: asyncpg.Connection,
    redis_proxy: Proxy,
) -> None:
    proxied = Streams.connect(
        redis_proxy.url(config.stores.redis_url), Keys(config.stores.namespace)
    )
    try:
        async with api_client(config, db, proxied, metrics) as (client, publisher):
            await proxied.ping()  # a live connection through the proxy, to be cut
            await redis_proxy.down()

            task = await created(client, priority="critical")
            assert task["status"] == "queued"
            status = await pg.fetchval(
                "SELECT status FROM tasks WHERE id = $1", uuid.UUID(task["id"])
            )
            assert status == "queued"
            assert await streams.entries("critical") == []
            assert publisher.backlog == 1

            resp = await client.get("/readyz")
            assert resp.status == 503
            assert (await resp.json())["checks"]["postgres"] == "ok"

            await redis_proxy.up()
            assert await publisher.flush() == 1
            assert publisher.backlog == 0
            entries = await streams.entries("critical")
            assert [f for _, f in entries] == [{"t": task["id"], "a": "1"}]
            assert await publisher.flush() == 0
            assert await stream_total(streams) == 1
    finally:
        await proxied.close()


async def test_publisher_loop_delivers_the_backlog_once_redis_is_back(
    config: Config,
    db: Database,
    streams: Streams,
    metrics: Metrics,
    redis_proxy: Proxy,
) -> None:
    config = config_mod.replace(config, publish_retry_ms=20)
    proxied = Streams.connect(
        redis_proxy.url(config.stores.redis_url), Keys(config.stores.namespace)
    )
    publisher = Publisher(proxied, metrics, retry_ms=config.ingest.publish_retry_ms)
    app = build_app(config, db, proxied, metrics, publisher)
    stop = asyncio.Event()
    try:
        async with TestClient(TestServer(app)) as client:
            await redis_proxy.down()
            body = {"tasks": [{"type": "t", "priority": p} for p in PRIORITIES]}
            resp = await client.post("/v1/tasks/batch", json=body)
            assert resp.status == 200
            ids = [r["id"] for r in (await resp.json())["results"]]
            assert publisher.backlog == len(PRIORITIES)

            runner = asyncio.create_task(publisher.run(stop))
            await redis_proxy.up()

            async def published() -> bool:
                return publisher.backlog == 0 and await stream_total(streams) == len(ids)

            await wait_for(published)
            for p, task_id in zip(PRIORITIES, ids, strict=True):
                assert [f["t"] for _, f in await streams.entries(p)] == [task_id]
            stop.set()
            await asyncio.wait_for(runner, 5)
    finally:
        stop.set()
        await proxied.close()
