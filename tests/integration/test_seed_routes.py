"""The seeds' routes behind JWT bearer auth: POST /addJob (the Go scheduler's body and
answers), GET /failedJobs?page=&limit= (dead letters in numbered pages) and POST /tasks."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient

from taskstream.shared import config as config_mod
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.factories import enqueue, new_task
from tests.helpers import api_client
from tests.ops_helpers import executor

Client = TestClient[Any, Any]
SECRET = "a-shared-secret-of-the-seed-system-0123456789"


def bearer(scope: str, tenant: str = "acme") -> dict[str, str]:
    claims = {"tenant": tenant, "scope": scope, "exp": int(time.time()) + 300}
    return {"Authorization": "Bearer " + jwt.encode(claims, SECRET, algorithm="HS256")}


@pytest.fixture
async def client(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> AsyncIterator[Client]:
    jwt_config = config_mod.replace(config, auth_mode="jwt", jwt_secret=SECRET)
    async with api_client(jwt_config, db, streams, metrics) as (c, _):
        yield c


@pytest.mark.parametrize("path", ["/addJob", "/tasks"])
async def test_add_job_and_tasks_take_the_go_body_with_a_jwt(
    client: Client, db: Database, path: str
) -> None:
    body = {"type": "email.send", "priority": "high", "payload": {"to": "a@b"},
            "idempotency_key": "job-1", "max_retries": 2}  # fmt: skip
    assert (await client.post(path, json=body)).status == 401
    first = await client.post(path, json=body, headers=bearer("tasks:write"))
    assert first.status == 202
    made = await first.json()
    assert made["status"] == "queued"
    again = await client.post(path, json=body, headers=bearer("tasks:write"))
    assert again.status == 200
    assert await again.json() == {"task_id": made["task_id"], "status": "duplicate"}
    task = await db.get_task(made["task_id"])
    assert task is not None
    assert (task.tenant, task.priority, task.max_attempts) == ("acme", "high", 3)
    assert (await client.post(path, json=body, headers=bearer("tasks:read"))).status == 403


async def test_failed_jobs_pages_the_tenants_dead_letters(
    client: Client, config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    mine = [new_task(config, "always_fail", max_attempts=1, tenant="acme") for _ in range(5)]
    theirs = [new_task(config, "always_fail", max_attempts=1, tenant="beta")]
    await enqueue(db, streams, mine + theirs)
    await executor(config, db, streams, metrics).run_once()
    assert (await client.get("/failedJobs")).status == 401
    seen: list[str] = []
    for page in (1, 2, 3):
        resp = await client.get(f"/failedJobs?page={page}&limit=2", headers=bearer("ops:read"))
        assert resp.status == 200
        body = await resp.json()
        assert (body["page"], body["limit"]) == (page, 2)
        assert body["has_more"] is (page < 3)
        seen += [j["task_id"] for j in body["jobs"]]
    assert sorted(seen) == sorted(str(t.id) for t in mine)
    dead_at = [j["dead_at"] for j in (await (await client.get(
        "/failedJobs?limit=100", headers=bearer("ops:read"))).json())["jobs"]]  # fmt: skip
    assert dead_at == sorted(dead_at, reverse=True)
    deep = await client.get("/failedJobs?page=100000&limit=100", headers=bearer("ops:read"))
    assert deep.status == 400 and (await deep.json())["error"]["field"] == "page"
    assert (await client.get("/failedJobs", headers=bearer("tasks:read"))).status == 403
