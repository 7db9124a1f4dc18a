"""The ingest API's operator routes against real Redis and Postgres: statuses and bodies."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from taskstream.services.ingest import openapi
from taskstream.shared import ops
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.domain import PRIORITIES
from taskstream.shared.keys import Keys
from taskstream.shared.metrics import Metrics
from taskstream.shared.ops_models import DlqSelection
from taskstream.shared.streams import Streams
from tests.factories import enqueue, new_task
from tests.helpers import api_client
from tests.ops_helpers import make_dead
from tests.proxy import Proxy

Client = TestClient[Any, Any]


@pytest.fixture
async def client(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> AsyncIterator[Client]:
    async with api_client(config, db, streams, metrics) as (c, _):
        yield c


@pytest.fixture
async def pg(config: Config) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(config.stores.database_url)
    yield conn
    await conn.close()


async def ok(resp: Any) -> Any:
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/json"
    return await resp.json()


async def error_of(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert set(body) == {"error"}
    assert {"code", "message"} <= set(body["error"]) <= {"code", "message", "field"}
    return dict(body["error"])


async def test_queues_route(config: Config, db: Database, streams: Streams, client: Client) -> None:
    await enqueue(db, streams, [new_task(config) for _ in range(3)])
    await streams.read("reader", {"default": 1})
    body = await ok(await client.get("/v1/queues"))
    assert [q["priority"] for q in body["queues"]] == list(PRIORITIES)
    [d] = [q for q in body["queues"] if q["priority"] == "default"]
    assert (d["length"], d["lag"], d["pending"], d["consumers"]) == (3, 2, 1, 1)
    assert d["lag_source"] == "xinfo" and d["oldest_pending_age_ms"] >= 0


async def test_pending_route_and_its_filters(
    config: Config, db: Database, streams: Streams, client: Client
) -> None:
    a, b = await enqueue(db, streams, [new_task(config, "email"), new_task(config, "sms")])
    await streams.read("reader-a", {"default": 1})
    await streams.read("reader-b", {"default": 1})

    body = await ok(await client.get("/v1/queues/default/pending"))
    assert [(e["task_id"], e["consumer"], e["type"], e["deliveries"]) for e in body["entries"]] == [
        (str(a), "reader-a", "email", 1),
        (str(b), "reader-b", "sms", 1),
    ]
    assert all(e["idle_ms"] >= 0 and e["stale"] is False for e in body["entries"])
    only_b = await ok(await client.get("/v1/queues/default/pending?consumer=reader-b"))
    assert [e["task_id"] for e in only_b["entries"]] == [str(b)]
    first = await ok(await client.get("/v1/queues/default/pending?limit=1&min_idle_ms=0"))
    assert [e["task_id"] for e in first["entries"]] == [str(a)]
    none = await ok(await client.get("/v1/queues/default/pending?min_idle_ms=3600000"))
    assert none["entries"] == []
    assert (await ok(await client.get("/v1/queues/low/pending")))["entries"] == []


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/queues/urgent/pending", "priority"),
        ("/v1/queues/default/pending?min_idle_ms=soon", "min_idle_ms"),
        ("/v1/queues/default/pending?min_idle_ms=-1", "min_idle_ms"),
        ("/v1/queues/default/pending?limit=0", "limit"),
        ("/v1/queues/default/pending?limit=5000", "limit"),
        ("/v1/dlq?priority=urgent", "priority"),
        ("/v1/dlq?limit=0", "limit"),
        ("/v1/dlq?limit=many", "limit"),
        ("/v1/dlq?cursor=garbage", "cursor"),
        ("/v1/dlq?since=yesterday", "since"),
        ("/v1/dlq?until=2030-01-01T00:00:00", "until"),  # no zone
    ],
)
async def test_bad_parameters_are_400_naming_the_field(
    client: Client, path: str, field: str
) -> None:
    error = await error_of(await client.get(path), 400)
    assert (error["code"], error["field"]) == ("invalid", field)


async def test_task_history_route(
    config: Config, db: Database, streams: Streams, metrics: Metrics, client: Client
) -> None:
    ids = await make_dead(config, db, streams, metrics)
    task_id = ids["refused"][0]
    body = await ok(await client.get(f"/v1/tasks/{task_id}/history"))
    assert body["task"]["id"] == str(task_id) and body["task"]["status"] == "dead"
    assert [(a["attempt"], a["error"]["message"]) for a in body["attempts"]] == [(1, "bad input")]
    assert body["dead_letter"]["reason"] == "non_retryable"
    assert body["latest"] is None and body["pending"] is None

    error = await error_of(await client.get(f"/v1/tasks/{uuid.uuid4()}/history"), 404)
    assert error["code"] == "not_found"


async def test_dlq_list_route_filters_and_pages(
    config: Config, db: Database, streams: Streams, metrics: Metrics, client: Client
) -> None:
    ids = await make_dead(config, db, streams, metrics)
    high = await ok(await client.get("/v1/dlq?priority=high"))
    assert {d["task_id"] for d in high["dead_letters"]} == {str(i) for i in ids["unknown"]}
    assert high["next_cursor"] is None
    err = await ok(await client.get("/v1/dlq", params={"error": "ALWAYS_FAIL: fails"}))
    assert {d["task_id"] for d in err["dead_letters"]} == {str(i) for i in ids["exhausted"]}
    since = await ok(await client.get("/v1/dlq?since=2000-01-01T00:00:00+00:00"))  # "+" unencoded
    assert len(since["dead_letters"]) == 7
    assert (await ok(await client.get("/v1/dlq?until=2000-01-01T00:00:00Z")))["dead_letters"] == []

    seen: list[str] = []
    url = "/v1/dlq?limit=3"
    while True:
        page = await ok(await client.get(url))
        seen.extend(d["task_id"] for d in page["dead_letters"])
        if page["next_cursor"] is None:
            break
        url = f"/v1/dlq?limit=3&cursor={page['next_cursor']}"
    assert sorted(seen) == sorted(str(i) for group in ids.values() for i in group)


async def test_replay_route_dry_run_then_for_real(
    config: Config,
    db: Database,
    streams: Streams,
    metrics: Metrics,
    client: Client,
    pg: asyncpg.Connection,
) -> None:
    ids = await make_dead(config, db, streams, metrics)
    high = [str(i) for i in ids["unknown"]]

    dry = await ok(await client.post("/v1/dlq/replay", json={"ids": high, "dry_run": True}))
    assert (dry["action"], dry["dry_run"], dry["count"], dry["missing"]) == ("replay", True, 2, [])
    assert await pg.fetchval("SELECT count(*) FROM dead_letters") == 7

    done = await ok(await client.post("/v1/dlq/replay", json={"filter": {"priority": "high"}}))
    assert (done["dry_run"], done["count"]) == (False, 2)  # dry_run defaults to false
    assert sorted(t["task_id"] for t in done["tasks"]) == sorted(high)
    statuses = await pg.fetch(
        "SELECT status, attempt FROM tasks WHERE id = ANY($1)", ids["unknown"]
    )
    assert {(r["status"], r["attempt"]) for r in statuses} == {("queued", 2)}

    unknown = str(uuid.uuid4())
    again = await ok(await client.post("/v1/dlq/replay", json={"ids": [high[0], unknown]}))
    assert again["count"] == 0 and sorted(again["missing"]) == sorted([high[0], unknown])
    rest = await ok(await client.post("/v1/dlq/replay", json={"all": True}))
    assert rest["count"] == 5


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, None),
        ({"dry_run": True}, None),
        ({"ids": []}, "ids"),
        ({"ids": ["not-a-uuid"]}, "ids[0]"),
        ({"filter": {}}, "filter"),
        ({"filter": {"colour": "red"}}, "filter.colour"),
        ({"filter": {"priority": "urgent"}}, "filter.priority"),
        ({"filter": {"since": "2030-01-01T00:00:00"}}, "filter.since"),
        ({"ids": [str(uuid.uuid4())], "all": True}, "all"),
        ({"all": True, "force": True}, "force"),
    ],
)
async def test_replay_route_rejects_a_bad_body_as_422(
    client: Client, pg: asyncpg.Connection, body: dict[str, Any], field: str | None
) -> None:
    error = await error_of(await client.post("/v1/dlq/replay", json=body), 422)
    assert error["code"] == "invalid"
    assert error.get("field") == field


async def test_replay_route_rejects_malformed_json_as_400(client: Client) -> None:
    resp = await client.post(
        "/v1/dlq/replay", data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert (await error_of(resp, 400))["code"] == "invalid_json"


async def test_delete_dlq_route(
    config: Config,
    db: Database,
    streams: Streams,
    metrics: Metrics,
    client: Client,
    pg: asyncpg.Connection,
) -> None:
    ids = await make_dead(config, db, streams, metrics)
    task_id = ids["refused"][0]
    body = await ok(await client.delete(f"/v1/dlq/{task_id}"))
    assert (body["action"], body["count"], body["tasks"][0]["task_id"]) == (
        "purge",
        1,
        str(task_id),
    )
    assert await pg.fetchval("SELECT status FROM tasks WHERE id = $1", task_id) == "dead"
    assert (await error_of(await client.delete(f"/v1/dlq/{task_id}"), 404))["code"] == "not_found"
    assert (await error_of(await client.delete("/v1/dlq/nope"), 404))["code"] == "not_found"


async def test_consumers_route(
    config: Config, db: Database, streams: Streams, client: Client
) -> None:
    await enqueue(db, streams, [new_task(config)])
    await streams.read("worker-1", {"default": 1})
    body = await ok(await client.get("/v1/consumers"))
    assert [(c["priority"], c["name"], c["pending"]) for c in body["consumers"]] == [
        ("default", "worker-1", 1)
    ]
    assert body["consumers"][0]["idle_ms"] >= 0


async def test_http_bodies_equal_the_ops_functions(
    config: Config, db: Database, streams: Streams, metrics: Metrics, client: Client
) -> None:
    await make_dead(config, db, streams, metrics)
    page = await ok(await client.get("/v1/dlq?limit=100"))
    direct = await ops.dlq_list(db, limit=100)
    assert [d["task_id"] for d in page["dead_letters"]] == [
        str(d.task_id) for d in direct.dead_letters
    ]
    dry = await ok(await client.post("/v1/dlq/replay", json={"all": True, "dry_run": True}))
    same = await ops.dlq_replay(db, streams, DlqSelection(all=True), dry_run=True)
    assert dry["count"] == same.count == 7


async def test_a_store_down_is_503(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    ids = await make_dead(config, db, streams, metrics)
    dead_redis = Streams.connect("redis://127.0.0.1:1/0", Keys(config.stores.namespace))
    try:
        async with api_client(config, db, dead_redis, metrics) as (client, _):
            for path in ("/v1/queues", "/v1/queues/default/pending", "/v1/consumers"):
                assert (await error_of(await client.get(path), 503))["code"] == "unavailable"
            resp = await client.post("/v1/dlq/replay", json={"all": True})
            assert resp.status == 503
            # The replay rolled back: every letter is still there, no task was queued.
            assert len((await ops.dlq_list(db, limit=100)).dead_letters) == 7
            refused = await db.get_task(ids["refused"][0])
            assert refused is not None and refused.status == "dead"
    finally:
        await dead_redis.close()

    async with Proxy.to(config.stores.database_url) as proxy:
        proxied = await Database.connect(
            proxy.url(config.stores.database_url), min_size=1, max_size=2
        )
        try:
            async with api_client(config, proxied, streams, metrics) as (client, _):
                assert len((await ok(await client.get("/v1/dlq")))["dead_letters"]) == 7
                await proxy.down()
                for path in ("/v1/dlq", "/v1/queues", f"/v1/tasks/{uuid.uuid4()}/history"):
                    assert (await error_of(await client.get(path), 503))["code"] == "unavailable"
        finally:
            await proxied.close()


def test_spec_declares_the_priority_path_parameter() -> None:
    operation = openapi.spec()["paths"]["/v1/queues/{priority}/pending"]["get"]
    assert ("priority", "path") in {(p["name"], p["in"]) for p in operation["parameters"]}
