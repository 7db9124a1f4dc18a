"""Per-tenant limits at submission: the rate (GCRA in Redis: 429 with Retry-After and
RateLimit-*, a batch counted whole), the in-flight quota (Postgres counter under its lock,
decremented by triggers as tasks end), the payload cap (413 naming the field), a Redis
outage failing open, and the limits' cache."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from taskstream.services.cli import main as cli_main
from taskstream.services.executor.executor import Executor
from taskstream.shared import config as config_mod
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.domain.access import TenantLimits, parse_rate, parse_size
from taskstream.shared.handlers import BUILTINS, Registry
from taskstream.shared.keys import Keys
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.conftest import counter_value
from tests.helpers import api_client, query, wait_for
from tests.ops_helpers import executor

Client = TestClient[Any, Any]
IN_FLIGHT = "SELECT count(*) AS n FROM tasks WHERE tenant = $1 AND status NOT IN " \
    "('succeeded', 'dead', 'cancelled')"  # fmt: skip


@pytest.fixture
def auth_config(config: Config) -> Config:
    return config_mod.replace(config, auth_mode="keys", api_key_cache_ms=60_000,
                              limits_cache_ms=0)  # fmt: skip


@pytest.fixture
async def client(
    auth_config: Config, db: Database, streams: Streams, metrics: Metrics
) -> AsyncIterator[Client]:
    async with api_client(auth_config, db, streams, metrics) as (c, _):
        yield c


async def key(db: Database, tenant: str = "acme", *scopes: str) -> dict[str, str]:
    created = await db.create_api_key(tenant, list(scopes or ["tasks:write", "tasks:read"]))
    assert created is not None
    return {"Authorization": f"Bearer {created.key}"}


async def usage(config: Config, tenant: str = "acme") -> int:
    rows = await query(
        config.stores.database_url, "SELECT in_flight FROM tenant_usage WHERE tenant = $1", tenant
    )
    return int(rows[0]["in_flight"]) if rows else 0


async def in_flight(config: Config, tenant: str = "acme") -> int:
    return int((await query(config.stores.database_url, IN_FLIGHT, tenant))[0]["n"])


def test_rates_and_sizes_parse() -> None:
    assert parse_rate("200/s") == 200 and parse_rate("120/m") == 2 and parse_rate("7") == 7
    assert parse_size("256KiB") == 262_144 and parse_size("1MiB") == 1_048_576
    for bad in ("fast", "0/s", "-1"):
        with pytest.raises(ValueError):
            parse_rate(bad)
    with pytest.raises(ValueError):
        parse_size("lots")


async def test_a_burst_over_the_rate_gets_429_and_the_accepted_count_matches_the_bucket(
    client: Client, db: Database, metric_reader: Any
) -> None:
    rate, burst = 20.0, 400
    await db.set_tenant(TenantLimits(name="acme", rate_per_s=rate, burst=burst))
    headers = await key(db)
    accepted = refused = 0
    refusal: Any = None

    async def submitter() -> None:
        nonlocal accepted, refused, refusal
        for _ in range(16):
            resp = await client.post("/v1/tasks", json={"type": "t"}, headers=headers)
            if resp.status == 201:
                accepted += 1
                assert int(resp.headers["RateLimit-Limit"]) == burst
                assert 0 <= int(resp.headers["RateLimit-Remaining"]) < burst
            else:
                assert resp.status == 429, await resp.text()
                refused += 1
                refusal = (dict(resp.headers), await resp.json())

    started = time.monotonic()
    await asyncio.gather(*(submitter() for _ in range(50)))  # 800 requests
    elapsed = time.monotonic() - started
    expected = burst + rate * elapsed  # the full bucket, and what refilled meanwhile
    assert accepted + refused == 800 and refused > 0
    assert expected * 0.99 - 1 <= accepted <= expected + 1, (accepted, expected, elapsed)
    headers_429, body = refusal
    assert int(headers_429["Retry-After"]) >= 1
    assert headers_429["RateLimit-Remaining"] == "0"
    assert body["error"]["code"] == "rate_limited" and "20/s" in body["error"]["message"]
    assert counter_value(metric_reader, "requests_rejected", reason="rate_limited") == refused


async def test_a_batch_counts_its_tasks_and_is_admitted_whole_or_not_at_all(
    client: Client, db: Database, auth_config: Config
) -> None:
    await db.set_tenant(TenantLimits(name="acme", rate_per_s=0.001, burst=10))
    headers = await key(db)
    tasks = [{"type": "t"}] * 8
    ok = await client.post("/v1/tasks/batch", json={"tasks": tasks}, headers=headers)
    assert ok.status == 200 and ok.headers["RateLimit-Remaining"] == "2"
    over = await client.post("/v1/tasks/batch", json={"tasks": [{"type": "t"}] * 3},
                             headers=headers)  # fmt: skip
    assert over.status == 429
    assert await in_flight(auth_config) == 8  # nothing of the refused batch was stored
    two = await client.post("/v1/tasks/batch", json={"tasks": [{"type": "t"}] * 2},
                            headers=headers)  # fmt: skip
    assert two.status == 200
    huge = await client.post("/v1/tasks/batch", json={"tasks": [{"type": "t"}] * 11},
                             headers=headers)  # fmt: skip
    assert huge.status == 429 and "smaller batches" in (await huge.json())["error"]["message"]


async def test_a_tenant_without_limits_is_not_limited(client: Client, db: Database) -> None:
    await db.set_tenant(TenantLimits(name="acme", rate_per_s=0.001, burst=1))
    other = await key(db, "beta")
    for _ in range(5):
        resp = await client.post("/v1/tasks", json={"type": "t"}, headers=other)
        assert resp.status == 201 and "RateLimit-Limit" not in resp.headers


async def test_the_in_flight_quota_holds_under_50_concurrent_submitters(
    client: Client, db: Database, streams: Streams, metrics: Metrics, auth_config: Config,
    metric_reader: Any,
) -> None:  # fmt: skip
    await db.set_tenant(TenantLimits(name="acme", max_in_flight=30))
    headers = await key(db)
    statuses: list[int] = []

    async def submitter() -> None:
        for _ in range(2):
            body = {"tasks": [{"type": "noop"}]} if len(statuses) % 2 else None
            resp = await (
                client.post("/v1/tasks/batch", json=body, headers=headers)
                if body
                else client.post("/v1/tasks", json={"type": "noop"}, headers=headers)
            )
            statuses.append(resp.status if resp.status != 200 else 201)
            if resp.status == 429:
                assert (await resp.json())["error"]["code"] == "quota_exceeded"

    await asyncio.gather(*(submitter() for _ in range(50)))
    assert statuses.count(201) == 30 and statuses.count(429) == 70
    assert await in_flight(auth_config) == 30 == await usage(auth_config)
    assert counter_value(metric_reader, "requests_rejected", reason="quota") == 70
    await executor(auth_config, db, streams, metrics).run_once()  # they all end
    assert await usage(auth_config) == 0
    assert (await client.post("/v1/tasks", json={"type": "noop"}, headers=headers)).status == 201


async def test_the_quota_holds_while_4_executors_run_and_50_submitters_retry(
    client: Client, db: Database, streams: Streams, metrics: Metrics, auth_config: Config
) -> None:
    limit = 20
    await db.set_tenant(TenantLimits(name="acme", max_in_flight=limit))
    headers = await key(db)
    registry = Registry()
    for name, fn in BUILTINS.items():
        registry.register(name, fn)
    stop = asyncio.Event()
    executors = [
        Executor(auth_config, db, streams, registry, metrics, consumer=f"x-{i}") for i in range(4)
    ]
    runs = [asyncio.create_task(e.run(stop)) for e in executors]
    accepted = 0
    most = 0

    async def submitter() -> None:
        nonlocal accepted
        while accepted < 150:
            resp = await client.post(
                "/v1/tasks", json={"type": "sleeper", "payload": {"ms": 20}}, headers=headers
            )
            if resp.status == 201:
                accepted += 1
            else:
                assert resp.status == 429
                await asyncio.sleep(0.01)

    async def sampler() -> None:
        nonlocal most
        while not stop.is_set():
            most = max(most, await in_flight(auth_config))
            await asyncio.sleep(0.01)

    watching = asyncio.create_task(sampler())
    try:
        await asyncio.wait_for(asyncio.gather(*(submitter() for _ in range(50))), 120)

        async def drained() -> bool:
            return await in_flight(auth_config) == 0

        await wait_for(drained, timeout=60)
    finally:
        stop.set()
        await asyncio.gather(*runs, watching)
    assert accepted >= 150
    assert 0 < most <= limit
    assert await usage(auth_config) == 0  # the counter agrees with the tasks


async def test_the_counter_follows_cancels_replays_and_a_quota_set_later(
    client: Client, db: Database, streams: Streams, metrics: Metrics, auth_config: Config
) -> None:
    headers = await key(db, "acme", "tasks:write", "tasks:read", "ops:write")
    early = await client.post("/v1/tasks", json={"type": "t", "delay_ms": 60_000},
                              headers=headers)  # fmt: skip
    assert early.status == 201
    await db.set_tenant(TenantLimits(name="acme", max_in_flight=5))
    assert await usage(auth_config) == 1  # the task already in flight counts from now on
    made = [await client.post("/v1/tasks", json={"type": "always_fail", "max_attempts": 1},
                              headers=headers) for _ in range(2)]  # fmt: skip
    assert await usage(auth_config) == 3
    assert (await client.post(f"/v1/tasks/{(await early.json())['id']}/cancel",
                              headers=headers)).status == 200  # fmt: skip
    assert await usage(auth_config) == 2
    await executor(auth_config, db, streams, metrics).run_once()  # both die
    assert await usage(auth_config) == 0
    ids = [(await m.json())["id"] for m in made]
    replay = await client.post("/v1/dlq/replay", json={"ids": ids}, headers=headers)
    assert (await replay.json())["count"] == 2
    assert await usage(auth_config) == 2 == await in_flight(auth_config)


async def test_a_payload_over_the_tenants_cap_is_413_naming_the_field(
    client: Client, db: Database, auth_config: Config
) -> None:
    await db.set_tenant(TenantLimits(name="acme", max_payload_bytes=100))
    headers = await key(db)
    big = {"type": "t", "payload": {"blob": "x" * 200}}
    resp = await client.post("/v1/tasks", json=big, headers=headers)
    assert resp.status == 413
    error = (await resp.json())["error"]
    assert (error["code"], error["field"]) == ("payload_too_large", "payload")
    batch = await client.post("/v1/tasks/batch", json={"tasks": [{"type": "t"}, big]},
                              headers=headers)  # fmt: skip
    first, second = (await batch.json())["results"]
    assert first["created"] is True
    assert second["error"]["field"] == "tasks[1].payload"
    assert await in_flight(auth_config) == 1


async def test_a_redis_outage_fails_open(
    auth_config: Config, db: Database, streams: Streams, metrics: Metrics, metric_reader: Any
) -> None:
    await db.set_tenant(TenantLimits(name="acme", rate_per_s=0.001, burst=1))
    headers = await key(db)
    dead = Streams.connect("redis://127.0.0.1:1/0", Keys(auth_config.stores.namespace),
                           timeout_s=0.5)  # fmt: skip
    try:
        async with api_client(auth_config, db, dead, metrics) as (c, _):
            for _ in range(3):  # the burst is 1: with Redis up the 2nd and 3rd would be 429
                resp = await c.post("/v1/tasks", json={"type": "t"}, headers=headers)
                assert resp.status == 201, await resp.text()
    finally:
        await dead.close()
    assert counter_value(metric_reader, "rate_checks_skipped") == 3


async def test_limits_are_cached_and_the_admin_route_applies_them_at_once(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    cached = config_mod.replace(config, auth_mode="keys", limits_cache_ms=60_000)
    user, admin = await key(db), await key(db, "ops", "admin")
    async with api_client(cached, db, streams, metrics) as (c, _):
        assert (await c.post("/v1/tasks", json={"type": "t"}, headers=user)).status == 201
        await db.set_tenant(TenantLimits(name="acme", max_payload_bytes=1))  # elsewhere
        assert (await c.post("/v1/tasks", json={"type": "t"}, headers=user)).status == 201
        resp = await c.put("/v1/tenants/acme", json={"max_payload_bytes": 1}, headers=admin)
        assert resp.status == 200
        assert (await c.post("/v1/tasks", json={"type": "t"}, headers=user)).status == 413
        listed = await (await c.get("/v1/tenants", headers=admin)).json()
        assert [t["name"] for t in listed["tenants"]] == ["acme"]


async def test_the_tenants_cli_sets_only_what_it_is_given(
    config: Config, db: Database, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("DATABASE_URL", config.stores.database_url)
    argv = ["tenants", "set", "acme", "--rate", "200/s", "--burst", "400", "--max-in-flight",
            "50000", "--max-payload", "256KiB"]  # fmt: skip
    assert await asyncio.to_thread(cli_main.main, argv) == 0
    assert await asyncio.to_thread(cli_main.main, ["tenants", "set", "acme", "--weight", "3"]) == 0
    (t,) = await db.tenants()
    assert (t.rate_per_s, t.burst, t.max_in_flight, t.max_payload_bytes, t.weight) == (
        200, 400, 50_000, 262_144, 3)  # fmt: skip
    assert await asyncio.to_thread(cli_main.main, ["tenants", "set", "acme", "--rate", "none"]) == 0
    capsys.readouterr()
    assert await asyncio.to_thread(cli_main.main, ["tenants", "list", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)["tenants"]
    assert listed["rate_per_s"] is None and listed["max_in_flight"] == 50_000
    assert await asyncio.to_thread(cli_main.main, ["tenants", "set", "acme", "--rate", "x"]) == 2
    assert "not a rate" in capsys.readouterr().err
