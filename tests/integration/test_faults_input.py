"""Issue 9's bad-data faults: NUL characters and out-of-range numbers get a 422 naming the
field, one bad task costs only itself (in a batch, in a group commit), and bad text in a
handler's error or a stream entry cannot take an executor or a janitor down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient

from taskstream.services.executor.executor import Executor
from taskstream.services.ingest.committer import GroupCommit
from taskstream.services.ingest.publisher import Publisher
from taskstream.services.janitor.janitor import Janitor
from taskstream.shared import config as config_mod
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.handlers import Context
from taskstream.shared.keys import GROUP
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.factories import enqueue, new_task
from tests.helpers import api_client, query
from tests.integration.test_executor import registry_with

Client = TestClient[Any, Any]


@pytest.fixture
async def client(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> AsyncIterator[Client]:
    async with api_client(config, db, streams, metrics) as (c, _):
        yield c


async def _tasks(config: Config) -> int:
    [row] = await query(config.stores.database_url, "SELECT count(*) AS n FROM tasks")
    return int(row["n"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "t", "payload": {"note": "a\u0000b"}}, "payload"),
        ({"type": "t", "payload": {"k\u0000": 1}}, "payload"),
        ({"type": "t", "payload": ["x", ["\u0000"]]}, "payload"),
        ({"type": "t", "idempotency_key": "a\u0000b"}, "idempotency_key"),
        ({"type": "t\u0000"}, "type"),
        ({"type": "0", "backoff": {"jitter_ms": 2591999999}}, "backoff.jitter_ms"),
        ({"type": "t", "backoff": {"max_ms": 2**31}}, "backoff.max_ms"),
    ],
)
async def test_values_postgres_cannot_store_are_422_naming_the_field(
    client: Client, config: Config, body: dict[str, Any], field: str
) -> None:
    resp = await client.post("/v1/tasks", json=body)
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["error"]["field"] == field
    assert await _tasks(config) == 0


async def test_a_literal_backslash_u0000_in_a_payload_is_fine(
    client: Client, config: Config
) -> None:
    resp = await client.post("/v1/tasks", json={"type": "t", "payload": {"s": "\\u0000"}})
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["payload"] == {"s": "\\u0000"}


async def test_one_bad_task_in_a_batch_gets_its_own_error(client: Client, config: Config) -> None:
    resp = await client.post(
        "/v1/tasks/batch",
        json={"tasks": [{"type": "a"}, {"type": "b", "payload": {"x": "\u0000"}}, {"type": "c"}]},
    )
    assert resp.status == 200
    results = (await resp.json())["results"]
    assert [r.get("status") for r in results] == ["queued", None, "queued"]
    assert results[1]["error"]["field"] == "tasks[1].payload"
    assert await _tasks(config) == 2


async def test_a_value_postgres_refuses_costs_only_its_own_request_in_a_group_commit(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    # Past validation (as a bug would let it), Postgres refuses the jsonb; the group commit
    # retries request by request, so its neighbours are stored.
    committer = GroupCommit(db, Publisher(streams, metrics, retry_ms=1000), metrics)
    good = [new_task(config) for _ in range(3)]
    bad = msgspec.structs.replace(new_task(config), payload=b'{"x": "\\u0000"}')
    results = await asyncio.gather(*(committer.insert([t]) for t in [good[0], bad, *good[1:]]))
    await committer.close()
    assert all(t.id in r.inserted for t, r in zip(good, [results[0], *results[2:]], strict=True))
    assert bad.id in results[1].rejected and bad.id not in results[1].inserted
    assert await _tasks(config) == 3


async def test_an_error_message_postgres_cannot_store_does_not_crash_the_executor(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    async def nul(payload: Any, ctx: Context) -> None:
        raise ValueError("bad \x00 byte and a lone \ud800 surrogate")

    async def unprintable(payload: Any, ctx: Context) -> None:
        raise Unprintable()

    tasks = [
        new_task(config, "nul", max_attempts=1),
        new_task(config, "unprintable", max_attempts=1),
    ]
    tasks.append(new_task(config))
    await enqueue(db, streams, tasks)
    registry = registry_with(nul=nul, unprintable=unprintable)
    ran = await Executor(config, db, streams, registry, metrics, consumer="c").run_once()

    assert ran == 3
    views = [await db.get_task(t.id) for t in tasks]
    assert [v.status if v else None for v in views] == ["dead", "dead", "succeeded"]
    assert views[0] is not None and views[0].last_error is not None
    assert views[0].last_error.message == "bad \ufffd byte and a lone ? surrogate"
    assert views[1] is not None and views[1].last_error is not None
    assert views[1].last_error.type == "Unprintable"


async def test_an_entry_with_an_attempt_out_of_range_is_kept_aside_not_fatal(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    [task_id] = await enqueue(db, streams, [new_task(config)])
    key = streams.keys.stream("default")
    await streams._r.xadd(key, {"t": str(task_id), "a": str(2**40)})
    await streams._r.xadd(key, {"t": "x", "a": "1", "junk": "\x00"})
    ran = await Executor(config, db, streams, registry_with(), metrics, consumer="c").run_once()

    assert ran == 3
    rows = await query(config.stores.database_url, "SELECT fields FROM dead_entries")
    assert len(rows) == 2
    view = await db.get_task(task_id)
    assert view is not None and view.status == "succeeded"


async def test_the_janitor_keeps_an_entry_with_a_nul_aside(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    config = config_mod.replace(config, vis_timeout_ms=1)
    await streams.ensure_groups()
    key = streams.keys.stream("default")
    await streams._r.xadd(key, {"t": "\x00", "a": "1"})
    await streams._r.xreadgroup(GROUP, "gone", {key: ">"})
    await asyncio.sleep(0.005)
    report = await Janitor(config, db, streams, metrics, name="j").run_once()
    assert report.bad == 1
    [row] = await query(config.stores.database_url, "SELECT fields FROM dead_entries")
    assert "\ufffd" in row["fields"]
