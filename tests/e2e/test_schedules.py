"""A schedule with the services as processes: an ``every: 1s`` schedule makes one succeeded
task per second, with its watcher SIGKILLed and restarted in between, and no tick doubled."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import time
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.e2e.system import System
from tests.e2e.test_services import wait_http
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e
SECOND = dt.timedelta(seconds=1)


async def request(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.request(method, url, json=body) as r:
        return r.status, await r.json()


async def scheduled(url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(
            await conn.fetch(
                "SELECT scheduled_for, status, started_at FROM tasks WHERE schedule = 'tick' "
                "ORDER BY scheduled_for"
            )
        )
    finally:
        await conn.close()


async def test_an_every_second_schedule_makes_one_succeeded_task_per_second_across_a_watcher_kill(
    system: System, database_url: str
) -> None:
    watcher_env = {"OUTBOX_GRACE_MS": "1000"}  # a kill between commit and publish: re-sent soon
    system.start("ingest")
    system.start("executor-1")
    system.start("watcher", **watcher_env)
    await wait_http(system.url)
    body = {"every": "1s", "overlap": "allow", "task": {"type": "noop", "payload": {"n": 1}}}
    status, created = await request("PUT", f"{system.url}/v1/schedules/tick", body)
    assert status == 201, created
    first = dt.datetime.fromisoformat(created["next_runs"][0])

    async def ticks_made(n: int) -> bool:
        return len(await scheduled(database_url)) >= n

    await wait_for(lambda: ticks_made(3), timeout=20)
    system.signal("watcher", signal.SIGKILL)  # mid-stream, wherever it is
    system.wait("watcher")
    await asyncio.sleep(2.5)  # ticks come while no watcher runs
    system.start("watcher", **watcher_env)
    await wait_for(lambda: ticks_made(12), timeout=30)
    status, _ = await request("DELETE", f"{system.url}/v1/schedules/tick")
    assert status == 200
    end = time.monotonic() + 20

    async def settled() -> bool:
        rows = await scheduled(database_url)
        return all(r["status"] == "succeeded" for r in rows)

    await wait_for(settled, timeout=max(1.0, end - time.monotonic()))

    rows = await scheduled(database_url)
    ticks = [r["scheduled_for"] for r in rows]
    assert len(ticks) == len(set(ticks))  # no tick doubled
    # One task for every second from the first tick on: none lost to the kill.
    assert ticks == [first + k * SECOND for k in range(len(ticks))]
    assert len(ticks) >= 12
    assert {r["status"] for r in rows} == {"succeeded"}
    assert all(r["started_at"] >= r["scheduled_for"] for r in rows)  # never early
