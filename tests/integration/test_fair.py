"""Fair shares between tenants (FAIR_SHARE_ENTRIES): a tenant's entries on the streams are
capped at its share, the rest held back in Postgres and released as its entries are read, so
another tenant's new task waits behind that share, not behind the whole backlog."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from taskstream.services.executor.executor import Executor
from taskstream.services.watcher.watcher import Watcher
from taskstream.shared import config as config_mod
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.domain.access import TenantLimits
from taskstream.shared.handlers import BUILTINS, Registry
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.helpers import api_client, query

Client = TestClient[Any, Any]
SHARE = 5


@pytest.fixture
def fair_config(config: Config) -> Config:
    return config_mod.replace(config, auth_mode="keys", fair_share_entries=SHARE,
                              limits_cache_ms=0, worker_pool=2, prefetch=0)  # fmt: skip


@pytest.fixture
async def client(
    fair_config: Config, db: Database, streams: Streams, metrics: Metrics
) -> AsyncIterator[Client]:
    await streams.ensure_groups()
    async with api_client(fair_config, db, streams, metrics) as (c, _):
        yield c


async def bearer(db: Database, tenant: str) -> dict[str, str]:
    created = await db.create_api_key(tenant, ["tasks:write", "tasks:read"])
    assert created is not None
    return {"Authorization": f"Bearer {created.key}"}


async def held(config: Config, tenant: str) -> int:
    rows = await query(config.stores.database_url,
                       "SELECT count(*) AS n FROM fair_held WHERE tenant = $1", tenant)  # fmt: skip
    return int(rows[0]["n"])


async def test_a_quiet_tenant_is_not_stuck_behind_a_busy_tenants_backlog(
    client: Client, fair_config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    a, b = await bearer(db, "acme"), await bearer(db, "beta")
    resp = await client.post("/v1/tasks/batch", json={"tasks": [{"type": "noop"}] * 60},
                             headers=a)  # fmt: skip
    assert resp.status == 200
    assert await streams.fair_counts(["acme"]) == {"acme": SHARE}
    assert await held(fair_config, "acme") == 60 - SHARE
    assert sum((await streams.lengths()).values()) == SHARE  # Redis holds only the share
    late = await client.post("/v1/tasks", json={"type": "noop"}, headers=b)
    late_id = (await late.json())["id"]
    assert await held(fair_config, "beta") == 0  # within its own share: on the stream at once
    registry = Registry()
    for name, fn in BUILTINS.items():
        registry.register(name, fn)
    executor = Executor(fair_config, db, streams, registry, metrics, consumer="x")
    watcher = Watcher(fair_config, db, streams, metrics)
    for _ in range(40):
        await executor.run_once()
        await watcher.fair.run_once()
        done = await query(
            fair_config.stores.database_url,
            "SELECT count(*) AS n FROM tasks WHERE status = 'succeeded'",
        )
        if done[0]["n"] == 61:
            break
    rows = await query(
        fair_config.stores.database_url,
        "SELECT id, tenant, started_at FROM tasks ORDER BY started_at",
    )
    assert len(rows) == 61 and all(r["started_at"] is not None for r in rows)
    position = [str(r["id"]) for r in rows].index(late_id)
    assert position <= SHARE  # behind at most acme's share, not its 60
    assert await held(fair_config, "acme") == 0
    assert await streams.fair_counts(["acme", "beta"]) == {"acme": 0, "beta": 0}


async def test_a_tenants_weight_multiplies_its_share(
    client: Client, fair_config: Config, db: Database, streams: Streams
) -> None:
    await db.set_tenant(TenantLimits(name="beta", weight=3))
    b = await bearer(db, "beta")
    resp = await client.post("/v1/tasks/batch", json={"tasks": [{"type": "noop"}] * 40},
                             headers=b)  # fmt: skip
    assert resp.status == 200
    assert await streams.fair_counts(["beta"]) == {"beta": 3 * SHARE}
    assert await held(fair_config, "beta") == 40 - 3 * SHARE


async def test_held_tasks_are_not_taken_for_lost_by_the_repair(
    client: Client, fair_config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    a = await bearer(db, "acme")
    await client.post("/v1/tasks/batch", json={"tasks": [{"type": "noop"}] * 20}, headers=a)
    await query(fair_config.stores.database_url,
                "UPDATE tasks SET updated_at = now() - interval '1 hour'")  # fmt: skip
    await streams.read("someone", {"default": 100})  # the group delivered past everything
    repaired = await Watcher(fair_config, db, streams, metrics).repair()
    assert repaired == SHARE  # only those whose entries it could have lost; none held back
    assert await held(fair_config, "acme") == 20 - SHARE
