"""Scenario E of ``make bench``: fair shares between tenants.

Tenant A has ``n`` (100,000) noop tasks queued at priority ``default``; tenant B submits 20
tasks a second at the same priority. B's enqueue → start p99 must stay under 1 s, beside the
same run without A. The services are restarted with API keys on (an admin key acting for
``bench-a`` and ``bench-b`` through ``X-Taskstream-Tenant``) and ``FAIR_SHARE_ENTRIES``; the
run with A once with fair shares and, for contrast, once without them.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import httpx

from tools.bench_system import BenchError, wait_ready

if TYPE_CHECKING:
    from tools.bench import Bench

KEY = "ts_live_bench-fair-share-admin-key-000000000000"
B_RATE = 20.0
E_P99_MS = 1000.0
SHARE = 2000


async def scenario_e(bench: Bench, n: int) -> None:
    seconds = 4.0 if bench.args.quick else 10.0
    alone = await _phase(bench, share=SHARE, backlog=0, seconds=seconds)
    fair = await _phase(bench, share=SHARE, backlog=n, seconds=seconds)
    unfair = await _phase(bench, share=0, backlog=n, seconds=seconds)
    how = f"B at {B_RATE:g}/s for {seconds:g} s, priority default"
    bench._row(measure=f"E: {how}, alone: B's enqueue to start p50 / p99",
               value=alone["p99"], result=_pair(alone), target="", met=None)  # fmt: skip
    bench._row(
        measure=f"E: {how}, beside A's {n:,} queued noop tasks (FAIR_SHARE_ENTRIES={SHARE}): "
        "B's enqueue to start p50 / p99",
        value=fair["p99"],
        result=_pair(fair),
        target=f"p99 < {E_P99_MS:g} ms",
        met=fair["p99"] < E_P99_MS,
    )
    bench._row(measure="E: the same without fair shares (one queue): B's p50 / p99",
               value=unfair["p99"], result=_pair(unfair), target="", met=None)  # fmt: skip
    bench._row(
        measure=f"E: cost, A's {n:,} tasks drained (first start to last finish) with fair shares "
        "/ without",
        value=fair["a_rate"],
        result=f"{fair['a_rate']:,.0f} / {unfair['a_rate']:,.0f} tasks/s",
        target="",
        met=None,
    )


def _pair(figures: dict[str, float]) -> str:
    return f"{figures['p50']:,.1f} / {figures['p99']:,.1f} ms"


async def _phase(bench: Bench, *, share: int, backlog: int, seconds: float) -> dict[str, float]:
    """Restart the services with keys on and ``share``; queue ``backlog`` tasks for A (and one
    warm-up task) with no executor running, start the executors, and once they have started
    a task, B's open loop; B's waits and A's drain rate."""
    cluster = bench.cluster
    cluster.stop()
    cluster.env.update(AUTH_MODE="keys", API_KEY_BOOTSTRAP=KEY, FAIR_SHARE_ENTRIES=str(share))
    for service in ("ingest", "watcher", "janitor"):
        cluster.start(service)
    await wait_ready(bench.url, cluster)
    bench.say(f"E: fair share {share or 'off'}, A's backlog {backlog:,}, B for {seconds:g} s")
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=bench.url, headers=headers, timeout=60) as client:
        warm = await client.post("/v1/tasks", json={"type": "noop"},
                                 headers={"X-Taskstream-Tenant": "bench-warm"})  # fmt: skip
        a_ids = await _submit_backlog(client, backlog)
        cluster.start("executor")
        await _wait_any_started(bench, [warm.json()["id"], *a_ids])
        b_ids = await _open_loop(client, seconds)
    db = bench.db
    assert db is not None
    await _wait_started(bench, b_ids + a_ids, timeout=600)
    waits = await _waits_ms(bench, b_ids)
    rate = await _drain_rate(bench, a_ids) if a_ids else 0.0
    cluster.stop_service("executor")
    return {"p50": _pct(waits, 50), "p99": _pct(waits, 99), "a_rate": rate}


async def _submit_backlog(client: httpx.AsyncClient, n: int) -> list[str]:
    ids: list[str] = []
    as_a = {"X-Taskstream-Tenant": "bench-a"}
    sem = asyncio.Semaphore(4)

    async def one(size: int) -> None:
        async with sem:
            resp = await client.post("/v1/tasks/batch", json={"tasks": [{"type": "noop"}] * size},
                                     headers=as_a)  # fmt: skip
            if resp.status_code != 200:
                raise BenchError(f"E: A's batch answered {resp.status_code}: {resp.text}")
            ids.extend(r["id"] for r in resp.json()["results"])

    await asyncio.gather(*(one(min(500, n - i)) for i in range(0, n, 500)))
    return ids


async def _open_loop(client: httpx.AsyncClient, seconds: float) -> list[str]:
    """B's tasks at B_RATE a second, each sent on time whatever the answers take."""
    as_b = {"X-Taskstream-Tenant": "bench-b"}
    ids: list[str] = []
    pending: list[asyncio.Task[Any]] = []

    async def one() -> None:
        resp = await client.post("/v1/tasks", json={"type": "noop"}, headers=as_b)
        if resp.status_code != 201:
            raise BenchError(f"E: B's task answered {resp.status_code}: {resp.text}")
        ids.append(resp.json()["id"])

    start = time.monotonic()
    for i in range(int(seconds * B_RATE)):
        await asyncio.sleep(max(0.0, start + i / B_RATE - time.monotonic()))
        pending.append(asyncio.create_task(one()))
    await asyncio.gather(*pending)
    return ids


async def _wait_any_started(bench: Bench, ids: list[str], timeout: float = 60) -> None:
    """Until the executors are up: one of these tasks has started."""
    deadline = time.monotonic() + timeout
    query = "SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[]) AND started_at IS NOT NULL"
    while await _fetchval(bench, query, ids) == 0:
        bench.cluster.check()
        if time.monotonic() > deadline:
            raise BenchError(f"E: the executors started nothing within {timeout:.0f} s")
        await asyncio.sleep(0.05)


async def _wait_started(bench: Bench, ids: list[str], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    query = "SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[]) AND status <> 'succeeded'"
    while True:
        bench.cluster.check()
        left = await _fetchval(bench, query, ids)
        if left == 0:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"E: {left} tasks not finished after {timeout:.0f} s")
        await asyncio.sleep(0.2)


async def _waits_ms(bench: Bench, ids: list[str]) -> list[float]:
    rows = await _fetch(
        bench,
        "SELECT extract(epoch FROM started_at - queued_at) * 1000 AS ms FROM tasks "
        "WHERE id = ANY($1::uuid[])",
        ids,
    )
    return sorted(float(r["ms"]) for r in rows)


async def _drain_rate(bench: Bench, ids: list[str]) -> float:
    rows = await _fetch(
        bench,
        "SELECT count(*) AS n, extract(epoch FROM max(finished_at) - min(started_at)) AS s "
        "FROM tasks WHERE id = ANY($1::uuid[])",
        ids,
    )
    n, s = rows[0]["n"], rows[0]["s"]
    return float(n) / float(s) if s else 0.0


def _pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(len(values) * p / 100))]


async def _fetch(bench: Bench, query: str, *args: Any) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(bench.database_url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def _fetchval(bench: Bench, query: str, *args: Any) -> int:
    rows = await _fetch(bench, query, *args)
    return int(rows[0][0])
