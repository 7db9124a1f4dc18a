"""Workflows against the real stores: steps wait, are released in their last parent's commit
exactly once however completions race, see their parents' results, are cancelled after a
failed parent (and re-armed by its replay) or run anyway, survive a crash between the
parent's commit and their publish; a workflow can be cancelled; bad shapes are refused whole."""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import re
import uuid
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from taskstream.services.cli import main as cli_main
from taskstream.services.executor.executor import Executor
from taskstream.services.janitor.gauges import Gauges
from taskstream.services.watcher.watcher import Watcher
from taskstream.shared import config as config_mod
from taskstream.shared import ops
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.domain import Ready
from taskstream.shared.errors import StoreError
from taskstream.shared.handlers import Context, NonRetryableError, Registry
from taskstream.shared.metrics import Metrics
from taskstream.shared.ops_models import DlqSelection
from taskstream.shared.streams import Streams
from tests.conftest import counter_value
from tests.helpers import api_client, wait_for
from tests.helpers import query as sql

Runs = collections.Counter[str]


def registry(runs: Runs, seen: dict[str, Any], *, fail: set[str] | None = None) -> Registry:
    """Type "step": records its name's run and the parents it saw, returns "<name>!"; a name
    in ``fail`` raises NonRetryableError. Type "flaky": fails its first two attempts."""
    r = Registry()

    async def step(payload: Any, ctx: Context) -> Any:
        name = payload["name"]
        runs[name] += 1
        seen[name] = (dict(ctx.parents), dict(ctx.parent_errors))
        if fail and name in fail:
            raise NonRetryableError(f"{name} fails")
        return f"{name}!"

    async def flaky(payload: Any, ctx: Context) -> Any:
        runs[payload["name"]] += 1
        if ctx.attempt_number <= 2:
            raise RuntimeError("not yet")
        return "finally"

    r.register("step", step)
    r.register("flaky", flaky)
    return r


def step(name: str, *deps: str, **options: Any) -> dict[str, Any]:
    return {"name": name, "type": "step", "payload": {"name": name},
            "depends_on": list(deps), **options}  # fmt: skip


async def submit(
    config: Config, db: Database, streams: Streams, metrics: Metrics, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    async with api_client(config, db, streams, metrics) as (client, _):
        resp = await client.post("/v1/workflows", json=body)
        return resp.status, await resp.json()


async def drive(
    config: Config, db: Database, streams: Streams, metrics: Metrics, reg: Registry,
    workflow_id: str, *, executors: int = 1,
) -> dict[str, Any]:  # fmt: skip
    """Run watcher passes and executors (``executors`` at once, in burst mode) until the
    workflow has ended; its view."""
    watcher = Watcher(config, db, streams, metrics)
    workers = [
        Executor(config, db, streams, reg, metrics, consumer=f"c{i}") for i in range(executors)
    ]

    async def ended() -> bool:
        await watcher.run_once()
        await asyncio.gather(*(w.run_once() for w in workers))
        view = await db.get_workflow(uuid.UUID(workflow_id))
        return view is not None and view.state != "running"

    await wait_for(ended, timeout=120, every=0.01)
    async with api_client(config, db, streams, metrics) as (client, _):
        resp = await client.get(f"/v1/workflows/{workflow_id}")
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
    return body


def by_name(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in view["steps"]}


async def test_a_diamond_runs_in_order_and_the_join_sees_both_results(
    config: Config, db: Database, streams: Streams, metrics: Metrics,
    metric_reader: InMemoryMetricReader,
) -> None:  # fmt: skip
    runs: Runs = collections.Counter()
    seen: dict[str, Any] = {}
    status, body = await submit(config, db, streams, metrics, {"name": "diamond", "steps": [
        step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")]})  # fmt: skip
    assert status == 201, body
    steps = by_name(body)
    assert steps["a"]["task"]["status"] == "queued"
    assert {steps[n]["task"]["status"] for n in "bcd"} == {"waiting"}
    assert steps["d"]["depends_on"] == ["b", "c"]
    # Waiting steps hold nothing in Redis and have no due row.
    assert await sql(config.stores.database_url, "SELECT * FROM due") == []

    view = await drive(config, db, streams, metrics, registry(runs, seen), body["id"])
    assert view["state"] == "succeeded" and view["steps_left"] == 0
    assert runs == {"a": 1, "b": 1, "c": 1, "d": 1}
    assert seen["b"][0] == {"a": "a!"} and seen["c"][0] == {"a": "a!"}
    assert seen["d"] == ({"b": "b!", "c": "c!"}, {})
    got = by_name(view)
    assert got["d"]["task"]["result"] == "d!"
    assert got["a"]["task"]["finished_at"] <= got["b"]["task"]["started_at"]
    assert (
        max(got["b"]["task"]["finished_at"], got["c"]["task"]["finished_at"])
        <= (got["d"]["task"]["started_at"])
    )
    assert counter_value(metric_reader, "workflows_started") == 1
    assert counter_value(metric_reader, "workflows_finished", outcome="succeeded") == 1


@pytest.mark.parametrize("shape", ["fan_out", "fan_in"])
async def test_a_thousand_wide_fan_releases_each_step_once_across_four_executors(
    config: Config, db: Database, streams: Streams, metrics: Metrics, shape: str
) -> None:
    runs: Runs = collections.Counter()
    seen: dict[str, Any] = {}
    wide = [f"s{i}" for i in range(1000)]
    if shape == "fan_out":
        steps = [step("root"), *(step(n, "root") for n in wide)]
    else:
        steps = [*(step(n) for n in wide), step("join", *wide)]
    config = config_mod.replace(config, workflow_max_steps=1001)
    status, body = await submit(config, db, streams, metrics, {"steps": steps})
    assert status == 201, body
    view = await drive(config, db, streams, metrics, registry(runs, seen), body["id"], executors=4)
    assert view["state"] == "succeeded"
    assert len(runs) == 1001 and set(runs.values()) == {1}
    if shape == "fan_in":
        assert seen["join"][0] == {n: f"{n}!" for n in wide}
    # One outbox row per release, each naming its tasks once; all published and gone.
    assert await sql(config.stores.database_url, "SELECT * FROM outbox") == []


async def test_a_parent_retried_twice_releases_its_children_once(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    runs: Runs = collections.Counter()
    seen: dict[str, Any] = {}
    flaky = {"name": "p", "type": "flaky", "payload": {"name": "p"}, "max_attempts": 3}
    status, body = await submit(config, db, streams, metrics, {"steps": [
        flaky, step("x", "p"), step("y", "p")]})  # fmt: skip
    assert status == 201, body
    view = await drive(config, db, streams, metrics, registry(runs, seen), body["id"])
    assert view["state"] == "succeeded"
    assert runs == {"p": 3, "x": 1, "y": 1}
    assert seen["x"][0] == {"p": "finally"}


async def test_a_dead_parent_cancels_its_descendants_and_its_replay_rearms_them(
    config: Config, db: Database, streams: Streams, metrics: Metrics,
    metric_reader: InMemoryMetricReader,
) -> None:  # fmt: skip
    runs: Runs = collections.Counter()
    seen: dict[str, Any] = {}
    fail = {"b"}
    status, body = await submit(config, db, streams, metrics, {"steps": [
        step("a"), step("b", "a"), step("c", "b"), step("d", "c"), step("e", "a")]})  # fmt: skip
    assert status == 201, body
    view = await drive(config, db, streams, metrics, registry(runs, seen, fail=fail), body["id"])
    assert view["state"] == "failed"
    got = by_name(view)
    assert got["b"]["task"]["status"] == "dead"
    for n in "cd":
        assert got[n]["task"]["status"] == "cancelled"
        assert got[n]["cancel_reason"] == "upstream_failed"
        assert got[n]["task"]["last_error"]["type"] == "UpstreamFailed"
    assert got["e"]["task"]["status"] == "succeeded"
    assert runs == {"a": 1, "b": 1, "e": 1}
    assert counter_value(metric_reader, "workflows_finished", outcome="failed") == 1

    fail.clear()  # fixed: the replay succeeds
    b_id = uuid.UUID(got["b"]["task"]["id"])
    replay = await ops.dlq_replay(db, streams, DlqSelection(ids=[b_id]), dry_run=False)
    assert replay.count == 1
    again = await db.get_workflow(uuid.UUID(body["id"]))
    assert again is not None and again.state == "running"
    assert {s.name: s.task.status for s in again.steps or []}["c"] == "waiting"
    view = await drive(config, db, streams, metrics, registry(runs, seen, fail=fail), body["id"])
    assert view["state"] == "succeeded"
    assert runs == {"a": 1, "b": 2, "c": 1, "d": 1, "e": 1}
    assert {s["cancel_reason"] for s in view["steps"]} == {None}


async def test_on_parent_failure_run_lets_the_child_run_and_see_the_error(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    runs: Runs = collections.Counter()
    seen: dict[str, Any] = {}
    status, body = await submit(config, db, streams, metrics, {"steps": [
        step("ok"), step("bad"),
        step("cleanup", "ok", "bad", on_parent_failure="run"),
        step("strict", "ok", "bad")]})  # fmt: skip
    assert status == 201, body
    view = await drive(config, db, streams, metrics, registry(runs, seen, fail={"bad"}), body["id"])
    got = by_name(view)
    assert got["cleanup"]["task"]["status"] == "succeeded"
    assert got["strict"]["task"]["status"] == "cancelled"
    parents, errors = seen["cleanup"]
    assert parents == {"ok": "ok!"}
    assert errors["bad"]["status"] == "dead"
    assert errors["bad"]["error"]["message"] == "bad fails"
    assert view["state"] == "failed"


async def test_a_crash_between_the_parents_commit_and_the_childrens_publish_runs_each_once(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    """The parent's success commits the children's release (and their outbox row); the
    watcher that publishes them dies between its publish and its commit, then another runs:
    the children have two entries each, fencing runs each once."""
    runs: Runs = collections.Counter()
    seen: dict[str, Any] = {}
    reg = registry(runs, seen)
    status, body = await submit(config, db, streams, metrics, {"steps": [
        step("p"), step("x", "p"), step("y", "p")]})  # fmt: skip
    assert status == 201, body
    watcher = Watcher(config, db, streams, metrics)
    await watcher.run_once()  # publishes p
    await Executor(config, db, streams, reg, metrics, consumer="c").run_once()
    assert runs == {"p": 1}
    released = await sql(
        config.stores.database_url, "SELECT task_ids FROM outbox WHERE source = 'enqueue'"
    )
    assert len(released) == 1 and len(released[0]["task_ids"]) == 2

    async def publish_then_die(rows: list[Ready]) -> None:
        await watcher.outbox._release.publish(rows)
        raise StoreError("the watcher died before its commit")

    with pytest.raises(StoreError):
        await db.drain_enqueued(100, publish_then_die)
    view = await drive(config, db, streams, metrics, reg, body["id"])
    assert view["state"] == "succeeded"
    assert runs == {"p": 1, "x": 1, "y": 1}


async def test_cancelling_a_running_workflow_cancels_every_step_not_started(
    config: Config, db: Database, streams: Streams, metrics: Metrics,
    metric_reader: InMemoryMetricReader,
) -> None:  # fmt: skip
    runs: Runs = collections.Counter()
    seen: dict[str, Any] = {}
    status, body = await submit(config, db, streams, metrics, {"steps": [
        step("a"), step("b", "a"), step("c", "b"), step("late", delay_ms=3_600_000)]})  # fmt: skip
    assert status == 201, body
    await Watcher(config, db, streams, metrics).run_once()
    await Executor(config, db, streams, registry(runs, seen), metrics, consumer="c").run_once()
    assert runs == {"a": 1}
    async with api_client(config, db, streams, metrics) as (client, _):
        resp = await client.post(f"/v1/workflows/{body['id']}/cancel")
        assert resp.status == 200
        cancelled = await resp.json()
        missing = await client.post(f"/v1/workflows/{uuid.uuid4()}/cancel")
        assert missing.status == 404
    assert len(cancelled["cancelled"]) == 3  # b (queued by now), c (waiting), late (scheduled)
    view = cancelled["workflow"]
    assert view["state"] == "cancelled" and view["steps_left"] == 0
    got = by_name(view)
    assert got["a"]["task"]["status"] == "succeeded"
    assert {got[n]["task"]["status"] for n in ("b", "c", "late")} == {"cancelled"}
    assert await sql(config.stores.database_url, "SELECT * FROM due") == []
    await Watcher(config, db, streams, metrics).run_once()
    await Executor(config, db, streams, registry(runs, seen), metrics, consumer="c").run_once()
    assert runs == {"a": 1}
    assert counter_value(metric_reader, "workflows_finished", outcome="cancelled") == 1


@pytest.mark.parametrize(
    ("steps", "field", "named"),
    [
        ([step("a", "nope")], "steps[0].depends_on", ["'a'", "'nope'"]),
        ([step("a", "c"), step("b", "a"), step("c", "b")], "steps", ["'a'", "'b'", "'c'"]),
        ([step("a", "a")], "steps[0].depends_on", ["'a'"]),
        ([step("a"), step("a")], "steps[1].name", ["'a'"]),
        ([step("a"), step("b", "a", delay_ms=10)], "steps[1].delay_ms", ["'b'"]),
        ([{"name": "a", "type": "step", "priority": "urgent"}], "steps[0].priority", []),
        ([{"name": "a", "type": "step", "idempotency_key": "k"}], "steps[0].idempotency_key", []),
        ([{"type": "step"}], "steps[0].name", []),
        ([], "steps", []),
    ],
)
async def test_bad_workflows_are_refused_naming_the_steps_and_nothing_is_written(
    config: Config, db: Database, streams: Streams, metrics: Metrics,
    steps: list[Any], field: str, named: list[str],
) -> None:  # fmt: skip
    status, body = await submit(config, db, streams, metrics, {"steps": steps})
    assert status == 422, body
    assert body["error"]["field"] == field
    for name in named:
        assert name in body["error"]["message"]
    assert await sql(config.stores.database_url, "SELECT * FROM workflows") == []
    assert await sql(config.stores.database_url, "SELECT * FROM tasks") == []


async def test_too_many_steps_and_idempotency(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    body = {"steps": [step("a"), step("b", "a")], "idempotency_key": "wf-1"}
    status, first = await submit(config, db, streams, metrics, body)
    assert status == 201
    status, again = await submit(config, db, streams, metrics, body)
    assert status == 200 and again["id"] == first["id"]
    status, other = await submit(config, db, streams, metrics, {**body, "name": "other"})
    assert status == 409 and other["error"]["field"] == "idempotency_key"
    status, big = await submit(
        config, db, streams, metrics, {"steps": [step(f"s{i}") for i in range(1001)]}
    )
    assert status == 413 and big["error"] == {
        "code": "too_large",
        "message": "at most 1000 steps per workflow, got 1001",
        "field": "steps",
    }


async def test_listing_workflows_by_state_in_pages(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    ids = []
    for _ in range(3):
        _, body = await submit(config, db, streams, metrics, {"steps": [step("a")]})
        ids.append(body["id"])
    async with api_client(config, db, streams, metrics) as (client, _):
        await client.post(f"/v1/workflows/{ids[0]}/cancel")
        page = await (await client.get("/v1/workflows?status=running&limit=1")).json()
        assert [w["id"] for w in page["workflows"]] == [ids[2]]
        page2 = await (
            await client.get(f"/v1/workflows?status=running&limit=1&cursor={page['next_cursor']}")
        ).json()
        assert [w["id"] for w in page2["workflows"]] == [ids[1]]
        cancelled = await (await client.get("/v1/workflows?status=cancelled")).json()
        assert [w["id"] for w in cancelled["workflows"]] == [ids[0]]
        bad = await client.get("/v1/workflows?status=nope")
        assert bad.status == 422 or bad.status == 400


async def test_the_cli_draws_the_dag_as_a_tree_with_states(
    config: Config, db: Database, streams: Streams, metrics: Metrics,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("REDIS_URL", config.stores.redis_url)
    monkeypatch.setenv("DATABASE_URL", config.stores.database_url)
    monkeypatch.setenv("TASKSTREAM_NAMESPACE", config.stores.namespace)
    runs: Runs = collections.Counter()
    status, body = await submit(config, db, streams, metrics, {"name": "diamond", "steps": [
        step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")]})  # fmt: skip
    assert status == 201
    await drive(config, db, streams, metrics, registry(runs, {}, fail={"c"}), body["id"])

    async def cli(*argv: str) -> tuple[int, str, str]:
        code = await asyncio.to_thread(cli_main.main, list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, err = await cli("workflow", "show", body["id"])
    assert (code, err) == (0, "")
    lines = [re.sub(r"^([│├└─ ]*\S+).*$", r"\1", line) for line in out.splitlines()[1:]]
    assert lines == ["a", "├── b", "│   └── d", "└── c", "    └── d"]
    assert "'diamond'  failed  4 steps, 0 left" in out.splitlines()[0]
    assert "c  dead" in out and "(NonRetryableError: c fails)" in out
    assert "d  cancelled  (upstream_failed)" in out and "d  (see above)" in out
    code, out, _ = await cli("workflow", "show", body["id"], "--json")
    assert code == 0 and json.loads(out)["state"] == "failed"
    code, out, _ = await cli("workflow", "list", "--status", "failed")
    assert code == 0 and body["id"] in out
    code, _, err = await cli("workflow", "show", str(uuid.uuid4()))
    assert code == 1 and "no workflow" in err
    code, _, err = await cli("workflow", "show", "nope")
    assert code == 2 and "not a workflow id" in err


async def test_a_long_chain_is_cancelled_and_rearmed_behind_its_first_step(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    """The trigger cancels (and re-arms) descendants level by level in a loop, not by one
    nested firing per level: a chain of WORKFLOW_MAX_STEPS steps behind a dead first step
    stays within Postgres's stack (nested firings exhausted it)."""
    runs: Runs = collections.Counter()
    names = [f"s{i}" for i in range(1000)]
    steps = [step(names[0]), *(step(n, p) for p, n in itertools.pairwise(names))]
    status, body = await submit(config, db, streams, metrics, {"steps": steps})
    assert status == 201, body
    fail = {"s0"}
    view = await drive(config, db, streams, metrics, registry(runs, {}, fail=fail), body["id"])
    assert view["state"] == "failed"
    assert {s["task"]["status"] for s in view["steps"][1:]} == {"cancelled"}
    fail.clear()
    s0 = uuid.UUID(view["steps"][0]["task"]["id"])
    await ops.dlq_replay(db, streams, DlqSelection(ids=[s0]), dry_run=False)
    again = await db.get_workflow(uuid.UUID(body["id"]))
    assert again is not None and again.state == "running" and again.steps_left == 1000
    statuses = [s.task.status for s in again.steps or []]
    assert statuses == ["queued", *["waiting"] * 999]


async def test_an_exactly_once_commit_and_a_task_cancel_move_the_workflow_on(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    """Release is in the task table's trigger, so every statement that ends a step moves the
    workflow on: here an exactly-once handler's own commit, and a plain task cancel."""
    runs: Runs = collections.Counter()
    reg = registry(runs, {})

    async def ledger(payload: Any, ctx: Context) -> Any:
        assert ctx.db is not None
        await ctx.db.execute("SELECT 1")
        runs["tx"] += 1
        return {"booked": True}

    reg.register("ledger", ledger, transactional=True)
    status, body = await submit(config, db, streams, metrics, {"steps": [
        {"name": "tx", "type": "ledger"}, step("after", "tx"), step("other"),
        step("x", "other"), step("y", "x")]})  # fmt: skip
    assert status == 201, body
    x = by_name(body)["x"]["task"]["id"]
    async with api_client(config, db, streams, metrics) as (client, _):
        resp = await client.post(f"/v1/tasks/{x}/cancel")
        assert resp.status == 200 and (await resp.json())["status"] == "cancelled"
    view = await drive(config, db, streams, metrics, reg, body["id"])
    got = by_name(view)
    assert got["after"]["task"]["status"] == "succeeded"
    assert runs["after"] == 1 and runs["tx"] == 1
    assert got["y"]["task"]["status"] == "cancelled"
    assert got["y"]["cancel_reason"] == "upstream_failed"
    assert view["state"] == "failed"


async def test_a_workflow_ended_by_a_task_cancel_is_counted_by_the_janitor_once(
    config: Config, db: Database, streams: Streams, metrics: Metrics,
    metric_reader: InMemoryMetricReader,
) -> None:  # fmt: skip
    status, body = await submit(config, db, streams, metrics, {"steps": [step("only")]})
    assert status == 201
    task = by_name(body)["only"]["task"]["id"]
    assert await db.cancel_task(uuid.UUID(task)) is not None
    gauges = Gauges(db, streams, metrics, interval_s=1)
    await gauges.run_once()
    await gauges.run_once()
    assert counter_value(metric_reader, "workflows_finished", outcome="failed") == 1
    view = await db.get_workflow(uuid.UUID(body["id"]))
    assert view is not None and view.state == "failed" and view.finished_at is not None
