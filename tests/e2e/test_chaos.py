"""The crash run: tasks flow through every service while each is SIGKILLed and restarted, Redis
restarts empty and Postgres crashes (immediate stop) and restarts; clients retry through their
idempotency keys. Every task must end as its handler deserves, effects written in the task's
own transaction exactly once, no task twice, none early, no service left dead; workflows
submitted among them end as their shapes say, no step started before its parents ended and no
cancelled step ran."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import time
from typing import Any

import aiohttp
import asyncpg
import pytest

from taskstream.shared import db as db_mod
from tests.e2e.system import System, free_port_block
from tests.e2e.test_crashes import EXPECTED, _workflow
from tests.helpers import wait_for
from tests.private import PrivatePostgres, PrivateRedis

pytestmark = pytest.mark.e2e

N = int(os.environ.get("CHAOS_BATCHES", "30"))  # batches of 20 tasks
SERVICES = ("ingest", "watcher", "janitor", "executor-1", "executor-2")


def _task(i: int) -> dict[str, Any]:
    key = f"chaos-{i}"
    kind = i % 10
    if kind < 5:
        return {"type": "effect", "payload": {"ms": 300}, "idempotency_key": key}
    if kind < 7:
        return {"type": "recorded", "payload": {"fail_first_n": 1}, "idempotency_key": key}
    if kind == 7:  # never succeeds: dead after its attempts
        return {"type": "recorded", "payload": {"fail": True}, "idempotency_key": key,
                "max_attempts": 2}  # fmt: skip
    return {"type": "recorded", "payload": {}, "delay_ms": 1500, "idempotency_key": key}


async def _submit(url: str, batch: list[dict[str, Any]], retries: list[int]) -> list[str]:
    """Post one batch until it is taken; retries carry the same idempotency keys."""
    while True:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s,
                s.post(f"{url}/v1/tasks/batch", json={"tasks": batch}) as r,
            ):
                if r.status == 200:
                    body = await r.json()
                    if all("id" in x for x in body["results"]):
                        return [x["id"] for x in body["results"]]
        except (aiohttp.ClientError, TimeoutError):
            pass
        retries[0] += 1
        await asyncio.sleep(0.2)


async def _submit_workflow(url: str, body: dict[str, Any], retries: list[int]) -> str:
    """Post one workflow until it is taken; retries carry the same idempotency key."""
    while True:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s,
                s.post(f"{url}/v1/workflows", json=body) as r,
            ):
                if r.status in (200, 201):
                    return str((await r.json())["id"])
        except (aiohttp.ClientError, TimeoutError):
            pass
        retries[0] += 1
        await asyncio.sleep(0.2)


async def test_every_promise_holds_through_a_run_of_crashes(
    tmp_path: Any, namespace: str, private_redis: PrivateRedis, private_postgres: PrivatePostgres
) -> None:
    url = private_postgres.url
    await db_mod.migrate(url)
    conn = await asyncpg.connect(url)
    await conn.execute("CREATE TABLE effects (task_id uuid NOT NULL, attempt int NOT NULL)")
    await conn.close()
    system = System(tmp_path, private_redis.url, url, namespace)
    base = free_port_block(len(SERVICES))
    for i, name in enumerate(SERVICES):
        system.start(name, METRICS_ADDR=f"127.0.0.1:{base + i}", WORKER_POOL="16")
    faults: list[str] = []

    async def chaos() -> None:
        steps: list[tuple[str, Any]] = [
            *((f"SIGKILL {name}", name) for name in ("executor-1", "watcher", "janitor")),
            ("Redis restarted empty", private_redis.restart_empty),
            ("SIGKILL ingest", "ingest"),
            ("Postgres crashed and restarted", None),
            ("SIGKILL executor-2", "executor-2"),
        ]
        for what, target in steps:
            await asyncio.sleep(1.2)
            faults.append(what)
            if isinstance(target, str):
                system.signal(target, signal.SIGKILL)
                await asyncio.to_thread(system.wait, target, 10)
                system.start(target, METRICS_ADDR=f"127.0.0.1:{base + SERVICES.index(target)}",
                             WORKER_POOL="16")  # fmt: skip
            elif target is None:
                await asyncio.to_thread(private_postgres.crash)
                await asyncio.sleep(0.5)
                await asyncio.to_thread(private_postgres.restart)
            else:
                await asyncio.to_thread(target)

    tasks = [_task(i) for i in range(N * 20)]
    retries = [0]
    started = time.monotonic()
    await wait_for(lambda: _ready(system.url), timeout=30)
    breaker = asyncio.create_task(chaos())
    ids: list[str] = []
    shapes = ["diamond", "fan", "broken"]
    workflows: dict[str, str] = {}  # id → shape
    for b in range(N):
        ids += await _submit(system.url, tasks[b * 20 : (b + 1) * 20], retries)
        if b % 2 == 0:
            shape = shapes[(b // 2) % 3]
            wf = await _submit_workflow(system.url, _workflow(shape, b), retries)
            workflows[wf] = shape
        await asyncio.sleep(0.25)
    await breaker
    steps = sum(len(EXPECTED[shape][1]) for shape in workflows.values())

    async def settled() -> bool:
        try:
            rows = await _fetch(url, "SELECT count(*) AS n FROM tasks WHERE status IN "
                                "('succeeded', 'dead', 'cancelled')")  # fmt: skip
        except (OSError, asyncpg.PostgresError):
            return False
        return bool(rows[0]["n"] == len(tasks) + steps)

    await wait_for(settled, timeout=120, every=0.5)
    took = time.monotonic() - started

    rows = await _fetch(
        url,
        "SELECT t.id::text, t.status, t.idempotency_key AS key, t.run_at, "
        "least(t.started_at, (SELECT min(a.started_at) FROM task_attempts a "
        "WHERE a.task_id = t.id)) AS first_start FROM tasks t WHERE t.workflow_id IS NULL",
    )
    assert len(rows) == len(tasks) == len({r["key"] for r in rows}), "a task twice"
    by_key = {r["key"]: r for r in rows}
    effects = collections.Counter(
        r["task_id"] for r in await _fetch(url, "SELECT task_id::text FROM effects")
    )
    runs = system.runs()
    for task in tasks:
        row = by_key[task["idempotency_key"]]
        deserved = "dead" if task["payload"].get("fail") else "succeeded"
        assert row["status"] == deserved, (task, row["status"])
        if task["type"] == "effect":
            assert effects[row["id"]] == 1, f"effect of {row['id']} x{effects[row['id']]}"
        if "delay_ms" in task:
            assert row["first_start"] >= row["run_at"], "a delayed task started early"
    states = {str(r["id"]): r["state"] for r in await _fetch(url, "SELECT * FROM workflows")}
    step_rows = await _fetch(
        url,
        "SELECT s.workflow_id::text AS wf, s.name, t.id::text AS id, t.status"
        " FROM workflow_steps s JOIN tasks t ON t.id = s.task_id",
    )
    by_wf: dict[str, dict[str, str]] = collections.defaultdict(dict)
    for r in step_rows:
        by_wf[r["wf"]][r["name"]] = r["status"]
        if r["status"] == "cancelled":
            assert runs["start"][r["id"]] == 0, "a cancelled step ran"
    for wf, shape in workflows.items():
        assert (states[wf], by_wf[wf]) == EXPECTED[shape], (wf, shape)
    early = await _fetch(
        url,
        "SELECT c.id FROM workflow_edges e JOIN tasks p ON p.id = e.parent"
        " JOIN tasks c ON c.id = e.child"
        " WHERE least(c.started_at, (SELECT min(a.started_at) FROM task_attempts a"
        " WHERE a.task_id = c.id)) < p.finished_at",
    )
    assert early == [], "a step started before its parents ended"
    assert all(p.poll() is None for p in system.procs.values()), "a service stayed dead"
    reclaimed = await _fetch(
        url, "SELECT count(*) AS n FROM task_attempts WHERE outcome = 'reclaimed'"
    )
    system.stop_all()
    print(
        f"\ncrash run: {len(tasks)} tasks and {len(workflows)} workflows ({steps} steps) in "
        f"{took:.1f} s through: {'; '.join(faults)}; "
        f"client retries {retries[0]}; attempts reclaimed {reclaimed[0]['n']}; effects "
        f"{sum(effects.values())} for {sum(1 for t in tasks if t['type'] == 'effect')} "
        f"effect tasks; handlers re-run {sum(1 for n in runs['done'].values() if n > 1)}"
    )


async def _ready(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as s, s.get(f"{url}/readyz") as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


async def _fetch(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()
