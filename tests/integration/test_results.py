"""Results: a handler's return value is stored with its success (in the same commit) and shown
by ``GET /v1/tasks/{id}``; a result too large or not JSON fails the attempt, clearly, without
retry; returning None writes nothing."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from taskstream.services.executor.executor import Executor
from taskstream.shared import config as config_mod
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.handlers import Context, Registry
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.conftest import counter_value
from tests.factories import enqueue, new_task
from tests.helpers import api_client
from tests.helpers import query as sql


@dataclasses.dataclass
class Receipt:
    order: int
    lines: list[str]


def registry_with(fn: Any, *, transactional: bool = False) -> Registry:
    registry = Registry()
    registry.register("job", fn, transactional=transactional)
    return registry


async def run(config: Config, db: Database, streams: Streams, metrics: Metrics, fn: Any,
              payload: Any = None, *, transactional: bool = False) -> uuid.UUID:  # fmt: skip
    [task_id] = await enqueue(db, streams, [new_task(config, "job", payload)])
    registry = registry_with(fn, transactional=transactional)
    await Executor(config, db, streams, registry, metrics, consumer="c").run_once()
    return task_id


async def test_a_result_round_trips_through_the_api(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    async def add(payload: Any, ctx: Context) -> Any:
        return {"sum": payload["a"] + payload["b"], "receipt": Receipt(7, ["x", "ü"])}

    task_id = await run(config, db, streams, metrics, add, {"a": 1, "b": 2})

    async with api_client(config, db, streams, metrics) as (client, _):
        resp = await client.get(f"/v1/tasks/{task_id}")
        assert resp.status == 200
        body = await resp.json()
    assert body["status"] == "succeeded"
    assert body["result"] == {"sum": 3, "receipt": {"order": 7, "lines": ["x", "ü"]}}


async def test_a_sync_handlers_result_is_stored_too(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    def shout(payload: Any, ctx: Context) -> str:
        return str(payload["word"]).upper()

    task_id = await run(config, db, streams, metrics, shout, {"word": "hey"})
    view = await db.get_task(task_id)
    assert view is not None and view.status == "succeeded" and view.result == "HEY"


async def test_returning_none_stores_nothing_and_the_result_is_null(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    async def quiet(payload: Any, ctx: Context) -> None:
        return None

    task_id = await run(config, db, streams, metrics, quiet)
    [row] = await sql(config.stores.database_url, "SELECT status, result FROM tasks")
    assert (row["status"], row["result"]) == ("succeeded", None)
    async with api_client(config, db, streams, metrics) as (client, _):
        body = await (await client.get(f"/v1/tasks/{task_id}")).json()
    assert "result" in body and body["result"] is None


async def test_a_result_over_the_limit_fails_the_attempt_without_retry(
    config: Config, db: Database, streams: Streams, metric_reader: InMemoryMetricReader,
    metrics: Metrics,
) -> None:  # fmt: skip
    config = config_mod.replace(config, result_max_bytes=100)

    async def big(payload: Any, ctx: Context) -> str:
        return "x" * 200

    task_id = await run(config, db, streams, metrics, big)
    view = await db.get_task(task_id)
    assert view is not None and view.status == "dead" and view.result is None
    assert view.last_error is not None and view.last_error.type == "ResultTooLarge"
    assert "202 bytes" in view.last_error.message and "RESULT_MAX_BYTES (100)" in (
        view.last_error.message
    )
    [letter] = await sql(config.stores.database_url, "SELECT reason FROM dead_letters")
    assert letter["reason"] == "bad_result"
    assert counter_value(metric_reader, "tasks_dead_lettered", reason="bad_result") == 1


async def test_a_result_just_at_the_limit_is_stored(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    config = config_mod.replace(config, result_max_bytes=100)

    async def fits(payload: Any, ctx: Context) -> str:
        return "x" * 98  # 100 bytes of JSON with its quotes

    task_id = await run(config, db, streams, metrics, fits)
    view = await db.get_task(task_id)
    assert view is not None and view.status == "succeeded" and view.result == "x" * 98


@pytest.mark.parametrize(
    ("value", "needle"),
    [(object(), "not JSON"), ({"a": [1j]}, "not JSON"), ({"k": "a\x00b"}, "NUL")],
    ids=["object", "complex", "nul"],
)
async def test_a_result_that_is_not_storable_json_fails_clearly(
    config: Config, db: Database, streams: Streams, metrics: Metrics, value: Any, needle: str
) -> None:
    async def odd(payload: Any, ctx: Context) -> Any:
        return value

    task_id = await run(config, db, streams, metrics, odd)
    view = await db.get_task(task_id)
    assert view is not None and view.status == "dead"
    assert view.last_error is not None and view.last_error.type == "ResultNotEncodable"
    assert needle in view.last_error.message


async def test_a_text_that_only_looks_like_an_escaped_nul_is_a_fine_result(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    async def literal(payload: Any, ctx: Context) -> str:
        return "\\u0000"

    task_id = await run(config, db, streams, metrics, literal)
    view = await db.get_task(task_id)
    assert view is not None and view.status == "succeeded" and view.result == "\\u0000"


async def test_an_exactly_once_handlers_result_commits_with_its_writes(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    url = config.stores.database_url
    await sql(url, "CREATE TABLE ledger (task_id uuid PRIMARY KEY)")

    async def pay(payload: Any, ctx: Context) -> Any:
        assert ctx.db is not None
        await ctx.db.execute("INSERT INTO ledger VALUES ($1)", ctx.task_id)
        return {"paid": True}

    task_id = await run(config, db, streams, metrics, pay, transactional=True)
    view = await db.get_task(task_id)
    assert view is not None and view.status == "succeeded" and view.result == {"paid": True}
    assert len(await sql(url, "SELECT * FROM ledger")) == 1


async def test_an_exactly_once_handlers_bad_result_rolls_its_writes_back(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    url = config.stores.database_url
    await sql(url, "CREATE TABLE ledger (task_id uuid PRIMARY KEY)")
    config = config_mod.replace(config, result_max_bytes=10)

    async def pay(payload: Any, ctx: Context) -> Any:
        assert ctx.db is not None
        await ctx.db.execute("INSERT INTO ledger VALUES ($1)", ctx.task_id)
        return "far too long a result"

    task_id = await run(config, db, streams, metrics, pay, transactional=True)
    view = await db.get_task(task_id)
    assert view is not None and view.status == "dead"
    assert view.last_error is not None and view.last_error.type == "ResultTooLarge"
    assert await sql(url, "SELECT * FROM ledger") == []


async def test_a_fenced_success_does_not_write_its_result(
    config: Config, db: Database, streams: Streams
) -> None:
    """The result goes in the fenced UPDATE itself: a stale attempt writes nothing."""
    from taskstream.shared.domain import Outcome

    [task_id] = await enqueue(db, streams, [new_task(config)])
    [claimed] = await db.claim([task_id], [1], ["0-1"], "c")
    stale = Outcome(task_id=task_id, attempt=claimed.attempt + 1, kind="succeeded",
                    result=b'{"late": true}')  # fmt: skip
    assert await db.complete([stale]) == set()
    [row] = await sql(config.stores.database_url, "SELECT status, result FROM tasks")
    assert (row["status"], row["result"]) == ("running", None)
