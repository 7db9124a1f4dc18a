"""Unique tasks: a second task with the same identity (its type and the ``unique`` fields) is
not created while the first is in its unique states (default: not yet finished) or within its
period; the answer is 200 with that task and ``"duplicate": true``. Enforced by the primary key
of ``unique_claims`` under concurrency, not by a lock or a check-then-act; plain tasks never
touch it, and their claims and completions stay HOT updates."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient

from taskstream.services.executor.executor import Executor
from taskstream.services.janitor.retention import Retention
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.domain import NewTask, Outcome
from taskstream.shared.handlers import Registry
from taskstream.shared.metrics import Metrics
from taskstream.shared.models import TaskRequest
from taskstream.shared.streams import Streams
from taskstream.shared.submit import new_task
from tests.factories import new_task as plain_task
from tests.helpers import api_client
from tests.helpers import query as q

Client = TestClient[Any, Any]
WELCOME = {"type": "email.welcome", "payload": {"user_id": 42, "lang": "en"}}
BY_USER = {"by": ["payload.user_id"]}


@pytest.fixture
async def client(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> AsyncIterator[Client]:
    async with api_client(config, db, streams, metrics) as (c, _):
        yield c


async def submit(client: Client, status: int, **body: Any) -> dict[str, Any]:
    resp = await client.post("/v1/tasks", json={**WELCOME, **body})
    assert resp.status == status, await resp.text()
    return dict(await resp.json())


def unique_task(config: Config, **unique: Any) -> NewTask:
    req = msgspec.convert({**WELCOME, "unique": unique or BY_USER}, TaskRequest)
    return new_task(req, config.tasks)


async def finish(db: Database, task_id: str, kind: str = "succeeded") -> None:
    """End a task as an executor would (claim, then the outcome)."""
    tid = uuid.UUID(task_id)
    [claimed] = await db.claim([tid], [1], ["0-1"], "c")
    error = b'{"type":"E","message":"m"}' if kind == "dead" else None
    outcome = Outcome(task_id=tid, attempt=1, kind=kind, error=error, reason="non_retryable",
                      unique=claimed.unique_states is not None)  # fmt: skip
    assert await db.complete([outcome]) == {tid}


async def test_a_second_task_with_the_same_identity_is_the_first_with_duplicate_true(
    client: Client, config: Config
) -> None:
    first = await submit(client, 201, unique=BY_USER)
    assert "duplicate" not in first
    again = await submit(client, 200, unique=BY_USER, payload={"user_id": 42, "lang": "de"})
    assert again["duplicate"] is True and again["id"] == first["id"]
    assert again["payload"] == {"user_id": 42, "lang": "en"}  # the existing task, as it is
    other = await submit(client, 201, unique=BY_USER, payload={"user_id": 43})
    assert other["id"] != first["id"]
    assert len(await q(config.stores.database_url, "SELECT id FROM tasks")) == 2


async def test_fifty_concurrent_submitters_over_http_make_exactly_one_task(
    client: Client, config: Config
) -> None:
    bodies = [{**WELCOME, "unique": BY_USER, "payload": {"user_id": 7, "n": i}} for i in range(50)]
    responses = await asyncio.gather(*(client.post("/v1/tasks", json=b) for b in bodies))
    answers = [(r.status, await r.json()) for r in responses]
    assert sorted(s for s, _ in answers) == [200] * 49 + [201]
    assert len({a["id"] for _, a in answers}) == 1
    assert all(a.get("duplicate") is True for s, a in answers if s == 200)
    assert len(await q(config.stores.database_url, "SELECT id FROM tasks")) == 1


async def test_fifty_concurrent_transactions_race_on_the_index_and_one_wins(
    config: Config,
) -> None:
    """Each submitter in its own transaction on its own connection, all at once: the primary
    key settles it (the losers wait for the winner's commit, then see its row)."""
    db = await Database.connect(config.stores.database_url, min_size=25, max_size=25)
    try:
        tasks = [unique_task(config) for _ in range(50)]
        results = await asyncio.gather(*(db.insert_tasks([t]) for t in tasks))
    finally:
        await db.close()
    created = [r for r in results if r.inserted]
    assert len(created) == 1
    [winner] = created[0].inserted
    duplicates = [next(iter(r.duplicates.values())) for r in results if r.duplicates]
    assert len(duplicates) == 49 and {d.id for d in duplicates} == {winner}
    assert len(await q(config.stores.database_url, "SELECT id FROM tasks")) == 1


async def test_the_identity_is_free_again_once_the_task_ended(client: Client, db: Database) -> None:
    first = await submit(client, 201, unique=BY_USER)
    await finish(db, first["id"])
    second = await submit(client, 201, unique=BY_USER)
    await finish(db, second["id"], "dead")
    third = await submit(client, 201, unique=BY_USER)
    resp = await client.post(f"/v1/tasks/{third['id']}/cancel")
    assert resp.status == 200
    await submit(client, 201, unique=BY_USER)


async def test_listed_end_states_keep_the_identity_after_the_task_ended(
    client: Client, db: Database, config: Config
) -> None:
    states = ["scheduled", "queued", "running", "retrying", "succeeded"]
    first = await submit(client, 201, unique={**BY_USER, "states": states})
    await finish(db, first["id"])
    again = await submit(client, 200, unique={**BY_USER, "states": states})
    assert again["duplicate"] is True and again["status"] == "succeeded"
    # Dead is not listed: a dead holder gives the identity up.
    await q(config.stores.database_url, "UPDATE tasks SET status = 'running'")
    await finish_running(db, first["id"], "dead")
    await submit(client, 201, unique={**BY_USER, "states": states})


async def finish_running(db: Database, task_id: str, kind: str) -> None:
    error = b'{"type":"E","message":"m"}'
    outcome = Outcome(task_id=uuid.UUID(task_id), attempt=1, kind=kind, error=error)
    assert await db.complete([outcome])


async def test_a_unique_task_run_by_an_executor_gives_its_identity_back(
    client: Client, config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    registry = Registry()
    registry.register("email.welcome", lambda payload, ctx: {"sent": True})
    await submit(client, 201, unique=BY_USER)
    await Executor(config, db, streams, registry, metrics, consumer="c").run_once()
    second = await submit(client, 201, unique=BY_USER)
    assert second["status"] == "queued"


async def test_the_period_holds_the_identity_after_the_task_ended_until_it_is_over(
    client: Client, db: Database, config: Config
) -> None:
    first = await submit(client, 201, unique={**BY_USER, "for": "10m"})
    await finish(db, first["id"])
    again = await submit(client, 200, unique={**BY_USER, "for": "10m"})
    assert again["id"] == first["id"]
    [claim] = await q(
        config.stores.database_url,
        "SELECT held, extract(epoch FROM until - created_at) AS period FROM unique_claims",
    )
    assert claim["held"] is False and 599 < claim["period"] <= 600
    # Ten minutes later (the clock moved for the claim):
    await q(config.stores.database_url, "UPDATE unique_claims SET until = now() - interval '1s'")
    third = await submit(client, 201, unique={**BY_USER, "for": "10m"})
    assert third["id"] != first["id"]


async def test_an_unfinished_task_holds_its_identity_past_its_period(
    client: Client, config: Config
) -> None:
    first = await submit(client, 201, unique={**BY_USER, "for": "1s"})
    await q(config.stores.database_url, "UPDATE unique_claims SET until = now() - interval '1s'")
    again = await submit(client, 200, unique={**BY_USER, "for": "1s"})
    assert again["id"] == first["id"]


async def test_what_the_identity_is_made_of(client: Client) -> None:
    key = await submit(client, 201, unique={"key": "welcome-42"})
    assert (await submit(client, 200, unique={"key": "welcome-42"}, payload={}))["id"] == key["id"]
    # The type is always part of it.
    await submit(client, 201, type="email.other", unique={"key": "welcome-42"})
    # A missing field and an explicit null are different identities.
    await submit(client, 201, unique=BY_USER, payload={"lang": "en"})
    await submit(client, 201, unique=BY_USER, payload={"user_id": None})
    await submit(client, 200, unique=BY_USER, payload={"user_id": None, "x": 1})
    # The order of `by` does not matter; priority can be part of it.
    by = {"by": ["priority", "payload.lang"]}
    one = await submit(client, 201, unique=by, priority="high")
    two = await submit(client, 200, unique={"by": ["payload.lang", "priority"]}, priority="high")
    assert one["id"] == two["id"]
    await submit(client, 201, unique=by, priority="low")


async def test_in_a_batch_each_duplicate_is_answered_per_item(client: Client) -> None:
    tasks = [
        {**WELCOME, "unique": BY_USER},
        {"type": "noop"},
        {**WELCOME, "unique": BY_USER, "payload": {"user_id": 42, "second": True}},
        {**WELCOME, "unique": {"by": ["payload.user_id"], "states": ["queued"]}},
    ]
    resp = await client.post("/v1/tasks/batch", json={"tasks": tasks})
    assert resp.status == 200
    results = (await resp.json())["results"]
    assert results[0]["created"] is True and "duplicate" not in results[0]
    assert results[1]["created"] is True
    assert results[2]["created"] is False and results[2]["duplicate"] is True
    assert results[2]["id"] == results[0]["id"]
    assert results[3]["error"]["field"] == "tasks[3].unique.states"


@pytest.mark.parametrize(
    ("unique", "field"),
    [
        ({"states": ["queued", "scheduled"]}, "unique.states"),
        ({"states": ["waiting"]}, "unique.states[0]"),
        ({"by": ["payload."]}, "unique.by[0]"),
        ({"by": ["user_id"]}, "unique.by[0]"),
        ({"for": "10 minutes"}, "unique.for"),
        ({"for": "0s"}, "unique.for"),
        ({"key": ""}, "unique.key"),
        ({"keys": "x"}, "unique.keys"),
    ],
)
async def test_a_bad_unique_option_is_422_naming_its_field(
    client: Client, config: Config, unique: dict[str, Any], field: str
) -> None:
    resp = await client.post("/v1/tasks", json={**WELCOME, "unique": unique})
    assert resp.status == 422
    assert (await resp.json())["error"]["field"] == field
    assert await q(config.stores.database_url, "SELECT * FROM tasks") == []


async def test_idempotency_keys_and_unique_identities_together(
    client: Client, config: Config
) -> None:
    url = config.stores.database_url
    first = await submit(client, 201, unique=BY_USER, idempotency_key="k1")
    # A retry of the same request: the key answers it, as without `unique`.
    retry = await submit(client, 200, unique=BY_USER, idempotency_key="k1")
    assert retry["id"] == first["id"] and "duplicate" not in retry
    # Another body under the same key is a conflict, whatever the identity.
    resp = await client.post(
        "/v1/tasks",
        json={
            **WELCOME,
            "unique": BY_USER,
            "payload": {"user_id": 9},
            "idempotency_key": "k1",
        },
    )
    assert resp.status == 409
    # ...and the identity it asked for was given back: a task may take it now.
    assert len(await q(url, "SELECT * FROM unique_claims")) == 1
    await submit(client, 201, unique=BY_USER, payload={"user_id": 9})
    # A new key whose identity is held: a duplicate, and the key is not taken.
    dup = await submit(client, 200, unique=BY_USER, idempotency_key="k2")
    assert dup["duplicate"] is True and dup["id"] == first["id"]
    assert await q(url, "SELECT * FROM idempotency_keys WHERE key = 'k2'") == []


async def test_a_replayed_unique_task_holds_its_identity_again(
    client: Client, db: Database
) -> None:
    first = await submit(client, 201, unique=BY_USER)
    await finish(db, first["id"], "dead")
    resp = await client.post("/v1/dlq/replay", json={"ids": [first["id"]]})
    assert resp.status == 200, await resp.text()
    again = await submit(client, 200, unique=BY_USER)
    assert again["id"] == first["id"] and again["status"] == "queued"


async def test_retention_deletes_a_claim_with_its_task(config: Config, db: Database) -> None:
    """No foreign key ties a claim to its task: the retention statements delete it."""
    from tests.integration.test_retention import add

    url = config.stores.database_url
    old = await add(url, created_days=9, status="succeeded", finished_days=8)
    await q(url, "INSERT INTO unique_claims (hash, task_id, held) VALUES ('\\x01', $1, false)", old)
    assert (await Retention(config.retention, db).run_once()).deleted == 1
    assert await q(url, "SELECT * FROM unique_claims") == []


async def test_plain_tasks_never_touch_the_claims_and_no_index_breaks_hot_updates(
    config: Config, db: Database, streams: Streams
) -> None:
    """Plain tasks write no claim and carry no unique states; the only index on tasks is its
    primary key, so no column a claim or a completion changes (status, result) is indexed
    and those updates can stay HOT; the state the unique index depends on is in
    ``unique_claims``, which only unique tasks touch."""
    url = config.stores.database_url
    plain = [plain_task(config) for _ in range(20)]
    await db.insert_tasks(plain)
    uniques = [unique_task(config, key=f"k{i}") for i in range(5)]
    await db.insert_tasks(uniques)
    rows = await q(url, "SELECT id, unique_states FROM tasks")
    states = {r["id"]: r["unique_states"] for r in rows}
    assert all(states[t.id] is None for t in plain)
    assert all(states[t.id] == 0b10111 for t in uniques)  # scheduled|queued|running|retrying
    assert {r["task_id"] for r in await q(url, "SELECT task_id FROM unique_claims")} == {
        t.id for t in uniques
    }
    ids: list[uuid.UUID] = [t.id for t in plain + uniques]
    claimed = await db.claim(ids, [1] * 25, ["0-1"] * 25, "c")
    assert {c.id for c in claimed if c.unique_states is not None} == {t.id for t in uniques}
    outcomes = [Outcome(task_id=c.id, attempt=1, kind="succeeded",
                        unique=c.unique_states is not None) for c in claimed]  # fmt: skip
    assert len(await db.complete(outcomes)) == 25
    [released] = await q(url, "SELECT count(*) AS n FROM unique_claims WHERE NOT held")
    assert released["n"] == 5
    indexes = await q(url, "SELECT indexname FROM pg_indexes WHERE tablename = 'tasks'")
    # Besides the primary key only the tenants' listing index (tenant, id), partial on other
    # tenants than the default: neither column ever changes, so no claim or completion
    # touches it.
    assert sorted(r["indexname"] for r in indexes) == ["tasks_pkey", "tasks_tenant_id"]
