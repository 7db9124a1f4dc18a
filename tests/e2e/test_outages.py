"""Services started while their stores are down wait for them (alive, not ready) and then work;
none exits for it."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.e2e.system import System, free_port, free_port_block
from tests.helpers import wait_for
from tests.private import PrivateRedis
from tests.proxy import Proxy

pytestmark = pytest.mark.e2e


async def _status(url: str) -> int:
    try:
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            return r.status
    except aiohttp.ClientError:
        return 0


async def test_every_service_started_with_both_stores_down_waits_and_then_works(
    tmp_path: object, database_url: str, namespace: str, request: pytest.FixtureRequest
) -> None:
    pg = Proxy.to(database_url)
    pg.reserve(free_port())
    redis = PrivateRedis(database_url)  # chooses a free port, started later
    system = System(tmp_path, redis.url, pg.url(database_url), namespace)  # type: ignore[arg-type]
    base = free_port_block(3)
    services = {"executor-1": base, "watcher": base + 1, "janitor": base + 2}
    try:
        system.start("ingest")
        for name, port in services.items():
            system.start(name, METRICS_ADDR=f"127.0.0.1:{port}")
        urls = [system.url, *(f"http://127.0.0.1:{p}" for p in services.values())]

        async def all_alive_not_ready() -> bool:
            health = [await _status(f"{u}/healthz") for u in urls]
            ready = [await _status(f"{u}/readyz") for u in urls]
            return health == [200] * 4 and ready == [503] * 4

        await wait_for(all_alive_not_ready, timeout=30)
        await asyncio.sleep(2)  # a few backoffs later, still waiting, none exited
        assert all(p.poll() is None for p in system.procs.values()), "a service exited"

        await pg.up()
        redis.start()

        async def all_ready() -> bool:
            return [await _status(f"{u}/readyz") for u in urls] == [200] * 4

        await wait_for(all_ready, timeout=30)
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{system.url}/v1/tasks", json={"type": "noop"}) as r:
                assert r.status == 201
                task_id = (await r.json())["id"]

            async def succeeded() -> bool:
                async with s.get(f"{system.url}/v1/tasks/{task_id}") as r:
                    return bool((await r.json())["status"] == "succeeded")

            await wait_for(succeeded, timeout=20)
    finally:
        # In a thread: the Postgres proxy runs on this event loop, and the services' clean
        # shutdown goes through it.
        await asyncio.to_thread(system.stop_all)
        codes = {n: p.returncode for n, p in system.procs.items()}
        if any(codes.values()):
            for name in system.procs:
                print(f"----- {name}.log", system.log(name)[-3000:], sep="\n")
        redis.cleanup()
        await pg.close()
    assert codes == dict.fromkeys(codes, 0)
