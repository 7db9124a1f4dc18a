"""The sync client against the services as processes: a producer keeps submitting while
ingest is SIGKILLed and restarted twice; its retries make no duplicate, and every task it was
answered runs once."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid

import httpx
import pytest

import taskstream
from tests.e2e.system import System
from tests.e2e.test_services import wait_http
from tests.helpers import query, wait_for

pytestmark = pytest.mark.e2e

N = 150


class Counting(httpx.HTTPTransport):
    """The real transport, counting requests that got no answer."""

    failures = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except httpx.TransportError:
            self.failures += 1
            raise


async def test_retries_across_a_killed_ingest_create_no_duplicates(
    system: System, database_url: str
) -> None:
    system.start("ingest")
    system.start("executor-1")
    system.start("watcher")  # re-sends what a killed ingest committed but did not publish
    await wait_http(system.url)
    answered: list[uuid.UUID] = []
    stop = threading.Event()
    policy = taskstream.RetryPolicy(retries=100, base_s=0.05, max_s=0.2)
    transport = Counting()

    def produce() -> None:
        with taskstream.Client(system.url, retry=policy, timeout=3, transport=transport) as client:
            for n in range(N):
                if stop.is_set():
                    return
                answered.append(client.submit("recorded", {"n": n}).id)
                time.sleep(0.005)  # a steady stream, so the kills land mid-way

    producer = asyncio.create_task(asyncio.to_thread(produce))
    try:
        for after in (30, 90):

            async def reached(after: int = after) -> bool:
                return len(answered) >= after

            await wait_for(reached, timeout=30)
            system.signal("ingest", signal.SIGKILL)
            system.wait("ingest")
            system.start("ingest")
        await asyncio.wait_for(producer, timeout=60)
    finally:
        stop.set()
    assert transport.failures >= 2  # each kill cost the producer at least one try
    assert len(answered) == N and len(set(answered)) == N
    rows = await query(database_url, "SELECT id, payload->>'n' AS n FROM tasks")
    assert len(rows) == N  # no retry made a second task
    assert {r["id"] for r in rows} == set(answered)
    assert sorted(int(r["n"]) for r in rows) == list(range(N))

    async def all_done() -> bool:
        done = await query(database_url, "SELECT count(*) FROM tasks WHERE status = 'succeeded'")
        return int(done[0][0]) == N

    await wait_for(all_done, timeout=60)
    runs = system.runs()
    assert set(runs["done"]) == {str(i) for i in answered}
    assert all(count == 1 for count in runs["done"].values())
