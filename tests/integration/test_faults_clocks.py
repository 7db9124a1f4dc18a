"""Issue 9's clock faults: every compared time comes from Postgres, so a service whose clock is
off never starts a task early and never re-sends a live backlog; and orphans of a dead executor
come back within about the visibility timeout, while a live one's are never cut short."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sys
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest

from taskstream.services.janitor.orphans import Orphans
from taskstream.services.watcher.watcher import Watcher
from taskstream.shared import config as config_mod
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.factories import enqueue, new_task
from tests.helpers import api_client, query
from tests.integration.test_janitor import stall


@contextlib.contextmanager
def skewed_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> Iterator[None]:
    """This process's clock (``time.time`` and every taskstream module's ``datetime.now``)
    off by ``seconds``, as on a host whose clock drifted; Postgres's and Redis's are not."""
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + seconds)

    class Skewed(dt.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return dt.datetime.now(tz) + dt.timedelta(seconds=seconds)

    shim = types.ModuleType("datetime")
    shim.__dict__.update(dt.__dict__)
    shim.datetime = Skewed  # type: ignore[attr-defined]
    for name, module in list(sys.modules.items()):
        if name.startswith("taskstream") and getattr(module, "dt", None) is dt:
            monkeypatch.setattr(module, "dt", shim)
    yield


async def test_a_delayed_task_is_never_early_however_far_behind_ingests_clock_is(
    config: Config,
    db: Database,
    streams: Streams,
    metrics: Metrics,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with skewed_clock(monkeypatch, -60):
        async with api_client(config, db, streams, metrics) as (client, _):
            resp = await client.post("/v1/tasks", json={"type": "noop", "delay_ms": 5000})
            assert resp.status == 201
            task = await resp.json()
            past = await client.post(
                "/v1/tasks", json={"type": "noop", "run_at": "2000-01-01T00:00:00Z"}
            )
            assert (await past.json())["status"] == "queued"
        assert task["status"] == "scheduled"
        assert (await Watcher(config, db, streams, metrics).run_once()).moved == 0
    [row] = await query(
        config.stores.database_url,
        "SELECT extract(epoch FROM run_at - created_at) AS ahead FROM tasks "
        "WHERE status = 'scheduled'",
    )
    assert 4.9 <= float(row["ahead"]) <= 5.5


async def test_a_watcher_whose_clock_is_ahead_does_not_resend_a_live_backlog(
    config: Config,
    db: Database,
    streams: Streams,
    metrics: Metrics,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Delivered to an executor that has not claimed them yet: in flight, not lost.
    await enqueue(db, streams, [new_task(config) for _ in range(5)])
    await streams.read("busy", {"default": 5})
    with skewed_clock(monkeypatch, config.watcher.repair_after_ms / 1000 * 2):
        report = await Watcher(config, db, streams, metrics).run_once()
    assert report.repaired == 0


async def test_a_dead_executors_orphan_comes_back_within_the_visibility_timeout(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    config = config_mod.replace(config, vis_timeout_ms=300)
    [dead, live] = await enqueue(
        db, streams, [new_task(config, timeout_ms=300_000), new_task(config, timeout_ms=300_000)]
    )
    await stall(streams, db, "dead-one")
    await stall(streams, db, "live-one")
    await streams._r.set(streams.keys.alive("live-one"), "1", px=60_000)  # its heartbeat
    await streams.delete_namespace()  # Redis lost everything: the entries are pending nowhere
    await streams.ensure_groups()
    await streams._r.set(streams.keys.alive("live-one"), "1", px=60_000)  # beats again
    await asyncio.sleep(0.35)  # claimed more than a visibility timeout ago
    role = Orphans(config.lease, db, streams, metrics, interval_s=0.1)

    first = await role.run_once()
    assert (first.orphans, first.waiting) == (0, 2)  # the dead one is watched from now on
    await asyncio.sleep(0.35)
    second = await role.run_once()
    assert (second.orphans, second.waiting) == (1, 1)
    view = await db.get_task(dead)
    assert view is not None and view.status == "retrying"
    view = await db.get_task(live)
    assert view is not None and view.status == "running"  # never cut short
