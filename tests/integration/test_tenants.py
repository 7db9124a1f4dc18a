"""Tenants: every task, dead letter and idempotency key belongs to the tenant of the credential
that made it; another tenant's object is 404 or absent from lists, never 403; an admin sees
every tenant, or acts for one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from taskstream.services.ingest import auth
from taskstream.shared import config as config_mod
from taskstream.shared import sql
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.factories import enqueue, new_task
from tests.helpers import api_client, query
from tests.ops_helpers import executor

Client = TestClient[Any, Any]
ALL = ["tasks:write", "tasks:read", "ops:read", "ops:write"]


@pytest.fixture
def auth_config(config: Config) -> Config:
    return config_mod.replace(config, auth_mode="keys", api_key_cache_ms=0)


@pytest.fixture
async def client(
    auth_config: Config, db: Database, streams: Streams, metrics: Metrics
) -> AsyncIterator[Client]:
    async with api_client(auth_config, db, streams, metrics) as (c, _):
        yield c


async def key(db: Database, tenant: str, *scopes: str) -> dict[str, str]:
    created = await db.create_api_key(tenant, list(scopes or ALL))
    assert created is not None
    return {"Authorization": f"Bearer {created.key}"}


async def submit(client: Client, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    resp = await client.post("/v1/tasks", json={"type": "t", **body}, headers=headers)
    assert resp.status in (200, 201), await resp.text()
    return dict(await resp.json())


async def test_a_task_belongs_to_the_credentials_tenant(
    client: Client, db: Database, auth_config: Config
) -> None:
    a = await key(db, "acme")
    task = await submit(client, a)
    assert task["tenant"] == "acme"
    rows = await query(auth_config.stores.database_url, "SELECT tenant FROM tasks")
    assert [r["tenant"] for r in rows] == ["acme"]


async def test_another_tenants_task_is_404_for_read_cancel_and_history(
    client: Client, db: Database
) -> None:
    a, b = await key(db, "acme"), await key(db, "beta")
    task = await submit(client, b, delay_ms=60_000)
    for method, path in (
        ("GET", f"/v1/tasks/{task['id']}"),
        ("POST", f"/v1/tasks/{task['id']}/cancel"),
        ("GET", f"/v1/tasks/{task['id']}/history"),
    ):
        resp = await client.request(method, path, headers=a)
        assert resp.status == 404, (method, path, resp.status)
        assert (await client.request(method, path, headers=b)).status == 200, path
    assert (await db.get_task(task["id"])) is not None  # the cancel by B went through only


async def test_lists_show_only_the_tenants_own_tasks(client: Client, db: Database) -> None:
    a, b = await key(db, "acme"), await key(db, "beta")
    mine = {(await submit(client, a))["id"] for _ in range(3)}
    theirs = {(await submit(client, b))["id"] for _ in range(2)}
    listed = await (await client.get("/v1/tasks", headers=a)).json()
    assert {t["id"] for t in listed["tasks"]} == mine
    page = await (await client.get("/v1/tasks?limit=1", headers=b)).json()
    cursor = page["next_cursor"]
    rest = await (await client.get(f"/v1/tasks?cursor={cursor}", headers=b)).json()
    assert {t["id"] for t in page["tasks"] + rest["tasks"]} == theirs


async def test_idempotency_keys_are_per_tenant(client: Client, db: Database) -> None:
    a, b = await key(db, "acme"), await key(db, "beta")
    first = await submit(client, a, idempotency_key="order-1")
    other = await submit(client, b, idempotency_key="order-1", payload={"x": 1})
    assert first["id"] != other["id"]
    again = await client.post("/v1/tasks", json={"type": "t", "idempotency_key": "order-1"},
                              headers=a)  # fmt: skip
    assert again.status == 200 and (await again.json())["id"] == first["id"]
    conflict = await client.post(
        "/v1/tasks", json={"type": "t", "payload": {"y": 2}, "idempotency_key": "order-1"},
        headers=b,
    )  # fmt: skip
    assert conflict.status == 409
    batch = await client.post(
        "/v1/tasks/batch", json={"tasks": [{"type": "t", "idempotency_key": "order-1"}]},
        headers=a,
    )  # fmt: skip
    (result,) = (await batch.json())["results"]
    assert result["id"] == first["id"] and result["created"] is False


async def _dead(
    config: Config, db: Database, streams: Streams, metrics: Metrics, tenant: str, n: int
) -> list[str]:
    tasks = [new_task(config, "always_fail", max_attempts=1, tenant=tenant) for _ in range(n)]
    await enqueue(db, streams, tasks)
    await executor(config, db, streams, metrics).run_once()
    return [str(t.id) for t in tasks]


async def test_dead_letters_are_the_tenants_own(
    client: Client, db: Database, streams: Streams, metrics: Metrics, config: Config
) -> None:
    a, b = await key(db, "acme"), await key(db, "beta")
    mine = await _dead(config, db, streams, metrics, "acme", 2)
    theirs = await _dead(config, db, streams, metrics, "beta", 3)
    listed = await (await client.get("/v1/dlq", headers=a)).json()
    assert sorted(d["task_id"] for d in listed["dead_letters"]) == sorted(mine)
    replay = await client.post("/v1/dlq/replay", json={"ids": theirs}, headers=a)
    body = await replay.json()
    assert body["count"] == 0 and sorted(body["missing"]) == sorted(theirs)
    everything = await client.post("/v1/dlq/replay", json={"all": True, "dry_run": True},
                                   headers=a)  # fmt: skip
    assert (await everything.json())["count"] == 2
    assert (await client.delete(f"/v1/dlq/{theirs[0]}", headers=a)).status == 404
    assert (await client.delete(f"/v1/dlq/{theirs[0]}", headers=b)).status == 200
    left = await (await client.get("/v1/dlq", headers=b)).json()
    assert len(left["dead_letters"]) == 2
    rows = await query(config.stores.database_url, "SELECT tenant, count(*) AS n FROM "
                       "dead_letters GROUP BY tenant ORDER BY tenant")  # fmt: skip
    assert [(r["tenant"], r["n"]) for r in rows] == [("acme", 2), ("beta", 2)]


async def test_pending_entries_show_only_the_tenants_tasks(
    client: Client, db: Database, streams: Streams, config: Config
) -> None:
    a = await key(db, "acme")
    await enqueue(db, streams, [new_task(config, tenant="acme"), new_task(config, tenant="beta")])
    await streams.read("someone", {"default": 10})  # delivered, never acked: pending
    mine = await (await client.get("/v1/queues/default/pending", headers=a)).json()
    assert len(mine["entries"]) == 1
    admin = await key(db, "ops", "admin")
    every = await (await client.get("/v1/queues/default/pending", headers=admin)).json()
    assert len(every["entries"]) == 2


async def test_an_admin_sees_every_tenant_or_acts_for_one(client: Client, db: Database) -> None:
    a, b, admin = await key(db, "acme"), await key(db, "beta"), await key(db, "ops", "admin")
    ta = await submit(client, a)
    await submit(client, b)
    every = await (await client.get("/v1/tasks", headers=admin)).json()
    assert {t["tenant"] for t in every["tasks"]} == {"acme", "beta"}
    assert (await client.get(f"/v1/tasks/{ta['id']}", headers=admin)).status == 200
    as_beta = {**admin, auth.TENANT_HEADER: "beta"}
    only_beta = await (await client.get("/v1/tasks", headers=as_beta)).json()
    assert {t["tenant"] for t in only_beta["tasks"]} == {"beta"}
    assert (await client.get(f"/v1/tasks/{ta['id']}", headers=as_beta)).status == 404
    made = await submit(client, as_beta)
    assert made["tenant"] == "beta"
    bad = await client.get("/v1/tasks", headers={**admin, auth.TENANT_HEADER: "No Such"})
    assert bad.status == 400


async def test_with_auth_off_there_is_one_default_tenant(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    async with api_client(config, db, streams, metrics) as (c, _):
        resp = await c.post("/v1/tasks", json={"type": "t", "idempotency_key": "k"})
        task = await resp.json()
        assert task["tenant"] == "default"
        assert (await c.get(f"/v1/tasks/{task['id']}")).status == 200


async def test_a_tenants_listing_uses_the_tenant_index_even_as_a_generic_plan(
    db: Database, streams: Streams, config: Config
) -> None:
    await enqueue(db, streams, [new_task(config, tenant="acme") for _ in range(3)])
    conn = await asyncpg.connect(config.stores.database_url)
    try:
        await conn.execute("SET enable_seqscan = off")  # a three-row table would be scanned
        # The plan a prepared statement settles on does not know the tenant's value: the
        # index's own condition in the query is what lets it use the partial index.
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE listing AS {sql.LIST_TASKS_OF_TENANT}")
        rows = await conn.fetch("EXPLAIN EXECUTE listing(NULL, NULL, NULL, NULL, 50, 'acme', NULL)")
        plan = "\n".join(r[0] for r in rows)
        # The console's bounded walk of one tenant's tasks reads the same index.
        await conn.execute(f"PREPARE walk AS {sql.LIST_TASKS_BOUNDED_OF_TENANT}")
        rows = await conn.fetch(
            "EXPLAIN EXECUTE walk('dead', NULL, NULL, NULL, 50, 'acme', NULL, 50000)"
        )
        walk = "\n".join(r[0] for r in rows)
    finally:
        await conn.close()
    assert "tasks_tenant_id" in plan, plan
    assert "Sort" not in plan, plan  # newest first straight from the index
    assert "tasks_tenant_id" in walk and "Sort" not in walk, walk


SCHEDULE = {"every": "1h", "task": {"type": "report", "payload": {}}}


async def test_schedules_are_per_tenant(
    client: Client, db: Database, streams: Streams, auth_config: Config
) -> None:
    await streams.ensure_groups()
    a, b = await key(db, "acme"), await key(db, "beta")
    other = await key(db, "gamma")
    admin = await key(db, "ops", "admin")
    for headers in (a, b):
        resp = await client.put("/v1/schedules/nightly", json=SCHEDULE, headers=headers)
        assert resp.status == 201, await resp.text()
        assert (await resp.json())["name"] == "nightly"
    mine = await (await client.get("/v1/schedules", headers=a)).json()
    assert [s["name"] for s in mine["schedules"]] == ["nightly"]
    for method, path in (
        ("GET", "/v1/schedules/nightly"),
        ("POST", "/v1/schedules/nightly/pause"),
        ("POST", "/v1/schedules/nightly/trigger"),
        ("DELETE", "/v1/schedules/nightly"),
    ):
        assert (await client.request(method, path, headers=other)).status == 404, path
    assert (await (await client.get("/v1/schedules", headers=other)).json())["schedules"] == []
    sneaky = await client.get("/v1/schedules/acme%2Fnightly", headers=other)
    assert sneaky.status in (400, 404)
    fired = await client.post("/v1/schedules/nightly/trigger", headers=a)
    assert fired.status == 201
    made = await db.get_task((await fired.json())["task_id"])
    assert made is not None and made.tenant == "acme"
    assert (await client.delete("/v1/schedules/nightly", headers=a)).status == 200
    assert (await client.get("/v1/schedules/nightly", headers=b)).status == 200  # B's stays
    every = await (await client.get("/v1/schedules", headers=admin)).json()
    assert [s["name"] for s in every["schedules"]] == ["beta/nightly"]


async def test_the_tenants_gauge_counts_tenants_without_naming_them(
    config: Config, db: Database, streams: Streams, metrics: Metrics, metric_reader: Any
) -> None:
    from taskstream.services.janitor.janitor import Janitor
    from taskstream.shared.domain.access import TenantLimits
    from tests.conftest import counter_value

    await key(db, "acme")
    await key(db, "beta")
    revoked = await db.create_api_key("gone", ["tasks:read"])
    assert revoked is not None
    await db.revoke_api_key(revoked.api_key.id)
    await db.set_tenant(TenantLimits(name="acme", rate_per_s=5))
    await db.set_tenant(TenantLimits(name="delta", max_in_flight=5))
    await db.set_concurrency_limit("tenant", "acme", 3)
    await Janitor(config, db, streams, metrics, name="janitor-test").run_once()
    assert counter_value(metric_reader, "tenants", which="known") == 3  # acme, beta, delta
    assert counter_value(metric_reader, "tenants", which="limited") == 2
    assert counter_value(metric_reader, "tenants", which="capped") == 1
    data = metric_reader.get_metrics_data()
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    assert "tenant" not in dict(point.attributes or {}), metric.name
