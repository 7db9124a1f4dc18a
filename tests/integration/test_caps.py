"""Concurrency caps: at most N tasks of a type, or of a tenant, running at once across every
executor (checked by the handlers themselves); a task over its cap waits, using no attempt,
and starts when a slot frees; a dead executor's slot comes back within the visibility
timeout; with no caps the executors do nothing more."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from taskstream.services.cli import main as cli_main
from taskstream.services.executor.executor import Executor
from taskstream.services.watcher.watcher import Watcher
from taskstream.shared import config as config_mod
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.handlers import BUILTINS, Context, Registry
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import SlotRequest, Streams
from tests.conftest import counter_value
from tests.factories import enqueue, new_task
from tests.helpers import query, wait_for

TERMINAL = "SELECT count(*) AS n FROM tasks WHERE status IN ('succeeded', 'dead', 'cancelled')"


class Gauge:
    """What the handlers see: how many run at once, at most."""

    def __init__(self) -> None:
        self.now: dict[str, int] = {}
        self.most: dict[str, int] = {}

    def handler(self, group: str, ms: float) -> Any:
        async def run(payload: Any, ctx: Context) -> None:
            key = payload.get("group", group) if isinstance(payload, dict) else group
            self.now[key] = self.now.get(key, 0) + 1
            self.most[key] = max(self.most.get(key, 0), self.now[key])
            try:
                await asyncio.sleep(ms / 1000)
            finally:
                self.now[key] -= 1

        return run


def registry(**handlers: Any) -> Registry:
    r = Registry()
    for name, fn in {**BUILTINS, **handlers}.items():
        r.register(name, fn)
    return r


@pytest.fixture
def fast(config: Config) -> Config:
    return config_mod.replace(config, unwait_interval_ms=20, limits_poll_ms=50, worker_pool=8)


async def run_until_done(
    config: Config, db: Database, streams: Streams, metrics: Metrics, reg: Registry, total: int,
    *, executors: int = 4, timeout: float = 90,
) -> None:  # fmt: skip
    stop = asyncio.Event()
    runs = [
        asyncio.create_task(
            Executor(config, db, streams, reg, metrics, consumer=f"x-{i}").run(stop)
        )
        for i in range(executors)
    ]
    watcher = Watcher(config, db, streams, metrics)
    watching = asyncio.create_task(watcher.run(stop))

    async def done() -> bool:
        return int((await query(config.stores.database_url, TERMINAL))[0]["n"]) == total

    try:
        await wait_for(done, timeout=timeout)
    finally:
        stop.set()
        await asyncio.gather(*runs, watching)


async def test_never_more_than_n_of_a_type_run_across_4_executors(
    fast: Config, db: Database, streams: Streams, metrics: Metrics, metric_reader: Any
) -> None:
    gauge = Gauge()
    await db.set_concurrency_limit("type", "payments.charge", 3)
    capped = [new_task(fast, "payments.charge") for _ in range(60)]
    free = [new_task(fast, "report", {"group": "report"}) for _ in range(30)]
    await enqueue(db, streams, capped + free)
    reg = registry(**{"payments.charge": gauge.handler("payments.charge", 15),
                      "report": gauge.handler("report", 15)})  # fmt: skip
    await run_until_done(fast, db, streams, metrics, reg, 90)
    assert gauge.most["payments.charge"] == 3  # the cap, reached and never passed
    assert gauge.most["report"] > 3  # other types are not held back
    rows = await query(
        fast.stores.database_url,
        "SELECT status, attempt - first_attempt + 1 AS used FROM tasks WHERE type = $1",
        "payments.charge",
    )
    assert {(r["status"], r["used"]) for r in rows} == {("succeeded", 1)}  # no attempt used
    assert counter_value(metric_reader, "concurrency_waits", kind="type") > 0
    assert await streams.slots_used([streams.keys.slots("type", "payments.charge")]) == {
        streams.keys.slots("type", "payments.charge"): 0
    }


async def test_a_tenant_cap_holds_across_its_types(
    fast: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    gauge = Gauge()
    await db.set_concurrency_limit("tenant", "acme", 2)
    tasks = [new_task(fast, t, {"group": "acme"}, tenant="acme") for t in ("a", "b") * 15]
    tasks += [new_task(fast, "a", {"group": "beta"}, tenant="beta") for _ in range(20)]
    await enqueue(db, streams, tasks)
    reg = registry(a=gauge.handler("a", 10), b=gauge.handler("b", 10))
    await run_until_done(fast, db, streams, metrics, reg, 50)
    assert gauge.most["acme"] == 2
    assert gauge.most["beta"] > 2


async def test_a_dead_executors_slot_comes_back_within_the_visibility_timeout(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    vis = 600
    cfg = config_mod.replace(config, vis_timeout_ms=vis, unwait_interval_ms=20)
    await db.set_concurrency_limit("type", "noop", 1)
    key = streams.keys.slots("type", "noop")
    # An executor that took the only slot and died: nobody extends its lease.
    assert await streams.acquire_slots(
        [SlotRequest(member="dead:1", caps=[key])], {key: 1}, vis
    ) == [None]
    died = time.monotonic()
    (task,) = await enqueue(db, streams, [new_task(cfg, "noop")])
    ex = Executor(cfg, db, streams, registry(), metrics, consumer="alive")
    await ex.run_once()
    waits = await query(cfg.stores.database_url, "SELECT task_id FROM limit_waits")
    assert [r["task_id"] for r in waits] == [task]
    watcher = Watcher(cfg, db, streams, metrics)

    async def started() -> bool:
        await watcher.unwait.run_once()
        await ex.run_once()
        found = await db.get_task(task)
        return found is not None and found.status == "succeeded"

    await wait_for(started, timeout=10)
    assert time.monotonic() - died < vis / 1000 + 1.0
    found = await db.get_task(task)
    assert found is not None and found.attempt == 1


async def test_a_live_executors_slot_is_kept_past_the_visibility_timeout(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    cfg = config_mod.replace(config, vis_timeout_ms=300, unwait_interval_ms=20)
    await db.set_concurrency_limit("type", "sleeper", 1)
    await enqueue(db, streams, [new_task(cfg, "sleeper", {"ms": 1000}) for _ in range(2)])
    stop = asyncio.Event()
    ex = Executor(cfg, db, streams, registry(), metrics, consumer="alive")
    running = asyncio.create_task(ex.run(stop))
    key = streams.keys.slots("type", "sleeper")

    async def one_running() -> bool:
        return (await streams.slots_used([key]))[key] == 1

    await wait_for(one_running, timeout=5)
    await asyncio.sleep(0.7)  # past the visibility timeout: the heartbeat keeps the lease
    assert (await streams.slots_used([key]))[key] == 1
    rows = await query(cfg.stores.database_url, "SELECT count(*) AS n FROM tasks WHERE status = "
                       "'running'")  # fmt: skip
    assert rows[0]["n"] == 1
    stop.set()
    await running


async def test_with_no_cap_the_executor_asks_nothing_more(
    config: Config, db: Database, streams: Streams, metrics: Metrics, monkeypatch: Any
) -> None:
    async def never(*args: Any) -> Any:
        raise AssertionError("no cap is set: capped_tasks must not be asked")

    monkeypatch.setattr(db, "capped_tasks", never)
    await enqueue(db, streams, [new_task(config) for _ in range(20)])
    ex = Executor(config, db, streams, registry(), metrics, consumer="x")
    assert await ex.run_once() == 20
    assert not ex.caps.active


async def test_removing_a_cap_releases_its_waiters(
    fast: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    await db.set_concurrency_limit("type", "noop", 1)
    key = streams.keys.slots("type", "noop")
    await streams.acquire_slots([SlotRequest(member="held:1", caps=[key])], {key: 1}, 60_000)
    await enqueue(db, streams, [new_task(fast) for _ in range(3)])
    ex = Executor(fast, db, streams, registry(), metrics, consumer="x")
    await ex.run_once()
    assert len(await query(fast.stores.database_url, "SELECT * FROM limit_waits")) == 3
    await db.clear_concurrency_limit("type", "noop")
    assert (await Watcher(fast, db, streams, metrics).unwait.run_once()).unwaited == 3
    ex = Executor(fast, db, streams, registry(), metrics, consumer="x")
    assert await ex.run_once() == 3
    assert int((await query(fast.stores.database_url, TERMINAL))[0]["n"]) == 3


async def test_the_limits_cli(
    config: Config, db: Database, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("DATABASE_URL", config.stores.database_url)
    argv = ["limits", "set", "--type", "payments.charge", "--max-running", "5"]
    assert await asyncio.to_thread(cli_main.main, argv) == 0
    argv = ["limits", "set", "--tenant", "acme", "--max-running", "10"]
    assert await asyncio.to_thread(cli_main.main, argv) == 0
    capsys.readouterr()
    assert await asyncio.to_thread(cli_main.main, ["limits", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["limits"]
    assert [(c["kind"], c["name"], c["max_running"]) for c in listed] == [
        ("tenant", "acme", 10), ("type", "payments.charge", 5)]  # fmt: skip
    clear = ["limits", "clear", "--type", "payments.charge"]
    assert await asyncio.to_thread(cli_main.main, clear) == 0
    assert await asyncio.to_thread(cli_main.main, clear) == 1
    bad = ["limits", "set", "--type", "x", "--max-running", "0"]
    assert await asyncio.to_thread(cli_main.main, bad) == 2


async def test_the_cap_holds_with_50_concurrent_submitters_and_4_executors(
    fast: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    from tests.helpers import api_client

    gauge = Gauge()
    await db.set_concurrency_limit("type", "payments.charge", 4)
    reg = registry(**{"payments.charge": gauge.handler("payments.charge", 10)})
    stop = asyncio.Event()
    runs = [
        asyncio.create_task(Executor(fast, db, streams, reg, metrics, consumer=f"x-{i}").run(stop))
        for i in range(4)
    ]
    watching = asyncio.create_task(Watcher(fast, db, streams, metrics).run(stop))
    try:
        async with api_client(fast, db, streams, metrics) as (client, _):

            async def submitter() -> None:
                for _ in range(2):
                    resp = await client.post("/v1/tasks", json={"type": "payments.charge"})
                    assert resp.status == 201

            await asyncio.gather(*(submitter() for _ in range(50)))

        async def done() -> bool:
            return int((await query(fast.stores.database_url, TERMINAL))[0]["n"]) == 100

        await wait_for(done, timeout=90)
    finally:
        stop.set()
        await asyncio.gather(*runs, watching)
    assert gauge.most["payments.charge"] == 4
