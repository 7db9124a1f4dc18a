"""The schedule and queue pause routes of ingest, against real Postgres and Redis."""

from __future__ import annotations

from typing import Any

import pytest

from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.conftest import counter_value
from tests.helpers import api_client

NIGHTLY: dict[str, Any] = {
    "cron": "0 3 * * *",
    "timezone": "Europe/Berlin",
    "task": {"type": "report.build", "payload": {"kind": "daily"}, "priority": "low"},
    "overlap": "skip",
    "catchup": "1h",
    "jitter": "30s",
}


@pytest.fixture
async def client(config: Config, db: Database, streams: Streams, metrics: Metrics) -> Any:
    await streams.ensure_groups()
    async with api_client(config, db, streams, metrics) as (c, _):
        yield c


async def test_put_creates_then_is_idempotent_then_replaces(client: Any) -> None:
    r = await client.put("/v1/schedules/nightly", json=NIGHTLY)
    assert r.status == 201
    body = await r.json()
    assert (body["change"], body["state"], body["cron"], body["timezone"]) == (
        "created",
        "active",
        "0 3 * * *",
        "Europe/Berlin",
    )
    assert body["task"] == NIGHTLY["task"] | {"max_attempts": None, "backoff": None,
                                               "timeout_ms": None}  # fmt: skip
    assert len(body["next_runs"]) == 5 and body["last_run"] is None
    assert body["counts"] == {"enqueued": 0, "caught_up": 0, "skipped": 0, "missed": 0,
                              "triggered": 0}  # fmt: skip
    again = await client.put("/v1/schedules/nightly", json=NIGHTLY)
    assert again.status == 200 and (await again.json())["change"] == "unchanged"
    changed = await client.put("/v1/schedules/nightly", json=NIGHTLY | {"overlap": "allow"})
    assert changed.status == 200 and (await changed.json())["change"] == "updated"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cron": "0 25 * * *"}, "cron"),
        ({"cron": None, "every": None}, "cron"),
        ({"every": "30s"}, "cron"),  # both
        ({"timezone": "Europe/Atlantis"}, "timezone"),
        ({"catchup": "an hour"}, "catchup"),
        ({"jitter": "-5s"}, "jitter"),
        ({"overlap": "queue"}, "overlap"),
        ({"start_at": "2030-01-02T00:00:00Z", "end_at": "2030-01-01T00:00:00Z"}, "end_at"),
        ({"task": {"type": "x", "max_attempts": 0}}, "task.max_attempts"),
        ({"task": {"type": "x", "idempotency_key": "k"}}, "task.idempotency_key"),
        ({"task": {"type": "x", "delay_ms": 5}}, "task.delay_ms"),
        ({"task": {"type": "x", "payload": {"a": "\u0000"}}}, "task.payload"),
        ({"task": {}}, "task.type"),
        ({"extra": 1}, "extra"),
    ],
)
async def test_a_bad_schedule_is_422_naming_the_field_and_stores_nothing(
    client: Any, change: dict[str, Any], field: str
) -> None:
    r = await client.put("/v1/schedules/bad", json=NIGHTLY | change)
    assert r.status == 422
    assert (await r.json())["error"]["field"] == field
    assert (await client.get("/v1/schedules/bad")).status == 404


async def test_bad_names_and_bodies(client: Any) -> None:
    r = await client.put("/v1/schedules/has%20space", json=NIGHTLY)
    assert r.status == 400 and (await r.json())["error"]["field"] == "name"
    r = await client.put("/v1/schedules/x", data=b"{not json")
    assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_json"
    for method, path in [
        ("GET", "/v1/schedules/none"),
        ("DELETE", "/v1/schedules/none"),
        ("POST", "/v1/schedules/none/pause"),
        ("POST", "/v1/schedules/none/resume"),
        ("POST", "/v1/schedules/none/trigger"),
    ]:
        assert (await client.request(method, path)).status == 404, path


async def test_pause_with_a_note_resume_trigger_list_delete(
    client: Any, metric_reader: Any
) -> None:
    await client.put("/v1/schedules/nightly", json=NIGHTLY)
    r = await client.post("/v1/schedules/nightly/pause", json={"note": "waiting on the DBA"})
    paused = await r.json()
    assert (r.status, paused["state"], paused["note"], paused["next_runs"]) == (
        200,
        "paused",
        "waiting on the DBA",
        [],
    )
    assert paused["paused_at"] is not None
    r = await client.post("/v1/schedules/nightly/trigger")
    assert r.status == 201
    assert counter_value(metric_reader, "schedule_runs", outcome="triggered") == 1
    run = await r.json()
    task = await (await client.get(f"/v1/tasks/{run['task_id']}")).json()
    assert (task["schedule"], task["scheduled_for"], task["type"], task["priority"]) == (
        "nightly",
        run["scheduled_for"],
        "report.build",
        "low",
    )
    r = await client.post("/v1/schedules/nightly/pause", json={"note": "a\u0000"})
    assert r.status == 422 and (await r.json())["error"]["field"] == "note"
    resumed = await (await client.post("/v1/schedules/nightly/resume")).json()
    assert (resumed["state"], resumed["note"], len(resumed["next_runs"])) == ("active", None, 5)
    one = await (await client.get("/v1/schedules/nightly")).json()
    assert one["last_run"]["task_id"] == run["task_id"] and one["counts"]["triggered"] == 1
    assert [r["outcome"] for r in one["runs"]] == ["triggered"]
    listed = await (await client.get("/v1/schedules")).json()
    assert [s["name"] for s in listed["schedules"]] == ["nightly"]
    r = await client.delete("/v1/schedules/nightly")
    assert (r.status, await r.json()) == (200, {"deleted": "nightly"})
    assert (await client.get("/v1/schedules/nightly")).status == 404
    # The tasks it made stay.
    assert (await client.get(f"/v1/tasks/{run['task_id']}")).status == 200


async def test_a_task_no_schedule_made_shows_both_fields_as_null(client: Any) -> None:
    r = await client.post("/v1/tasks", json={"type": "noop"})
    body = await (await client.get(f"/v1/tasks/{(await r.json())['id']}")).json()
    assert body["schedule"] is None and body["scheduled_for"] is None


async def test_queue_pause_routes_and_the_queues_view(client: Any) -> None:
    r = await client.post("/v1/queues/pause", json={"priority": "high", "note": "deploy"})
    body = await r.json()
    assert (r.status, body["kind"], body["name"], body["paused"], body["changed"]) == (
        200,
        "priority",
        "high",
        True,
        True,
    )
    r = await client.post("/v1/queues/pause", json={"type": "payments.charge"})
    assert r.status == 200
    queues = await (await client.get("/v1/queues")).json()
    [high] = [q for q in queues["queues"] if q["priority"] == "high"]
    assert (high["paused"], high["paused_note"]) == (True, "deploy")
    assert [t["type"] for t in queues["paused_types"]] == ["payments.charge"]
    pauses = await (await client.get("/v1/queues/pauses")).json()
    assert [(p["kind"], p["name"]) for p in pauses["pauses"]] == [
        ("priority", "high"),
        ("type", "payments.charge"),
    ]
    r = await client.post("/v1/queues/resume", json={"priority": "high"})
    assert (await r.json())["changed"] is True
    for bad, field in [
        ({}, "priority"),
        ({"priority": "urgent"}, "priority"),
        ({"priority": "high", "type": "x"}, "priority"),
        ({"type": "no spaces"}, "type"),
    ]:
        r = await client.post("/v1/queues/pause", json=bad)
        assert r.status == 422 and (await r.json())["error"]["field"] == field, bad
