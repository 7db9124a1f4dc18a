"""Crash tests: SIGKILL at the worst moments and Redis restarted empty, with real processes.

In each, every task must end in the state its handler deserves, and no handler may run to
success twice unless a crash forced a re-run (then only one success is recorded).
"""

from __future__ import annotations

import collections
import os
import random
import re
import signal
import time
from typing import Any

import pytest

from tests.e2e.system import System
from tests.e2e.test_services import post, wait_http
from tests.helpers import query as fetch
from tests.helpers import wait_for
from tests.private import PrivateRedis

pytestmark = pytest.mark.e2e


async def status_counts(url: str) -> collections.Counter[str]:
    rows = await fetch(url, "SELECT status, count(*) AS n FROM tasks GROUP BY status")
    return collections.Counter({r["status"]: r["n"] for r in rows})


async def submit(system: System, tasks: list[dict[str, Any]]) -> list[str]:
    ids: list[str] = []
    for i in range(0, len(tasks), 500):
        status, body = await post(system.url, "/v1/tasks/batch", {"tasks": tasks[i : i + 500]})
        assert status == 200, body
        ids.extend(r["id"] for r in body["results"])
    return ids


async def settled(url: str, n: int) -> bool:
    counts = await status_counts(url)
    return sum(counts[s] for s in ("succeeded", "dead", "cancelled")) == n


async def test_executor_killed_mid_task_is_reclaimed_and_the_task_succeeds_once(
    system: System, database_url: str
) -> None:
    system.start("ingest")
    system.start("watcher")
    system.start("janitor")
    await wait_http(system.url)
    [task_id] = await submit(system, [{"type": "recorded", "payload": {"ms": 1500}}])
    system.start("executor-1")

    async def started() -> bool:
        return system.runs()["start"][task_id] == 1

    await wait_for(started, timeout=20)
    system.signal("executor-1", signal.SIGKILL)
    system.start("executor-2")
    await wait_for(lambda: settled(database_url, 1), timeout=30)

    [row] = await fetch(database_url, "SELECT status, attempt FROM tasks")
    assert (row["status"], row["attempt"]) == ("succeeded", 2)
    [failed] = await fetch(database_url, "SELECT outcome, consumer FROM task_attempts")
    assert (failed["outcome"], failed["consumer"]) == ("reclaimed", "executor-1")
    runs = system.runs()
    assert runs["start"][task_id] == 2 and runs["done"][task_id] == 1


async def test_watcher_killed_between_commit_and_xadd_yields_one_success(
    system: System, database_url: str
) -> None:
    system.start("ingest")
    system.start("executor-1")
    system.start("watcher", TASKSTREAM_CRASH_AT="watcher.after_commit")
    await wait_http(system.url)
    ids = await submit(
        system, [{"type": "recorded", "delay_ms": 200, "payload": {}} for _ in range(5)]
    )
    assert system.wait("watcher") == -signal.SIGKILL  # died after its commit, before XADD
    rows = await fetch(database_url, "SELECT status FROM tasks")
    assert {r["status"] for r in rows} == {"queued"}  # moved, but no entry was added
    system.start("watcher-2")  # its repair re-sends them (REPAIR_AFTER_MS)

    await wait_for(lambda: settled(database_url, len(ids)), timeout=30)
    assert (await status_counts(database_url)) == {"succeeded": len(ids)}
    runs = system.runs()
    assert all(runs["done"][i] == 1 for i in ids)
    assert all(runs["start"][i] == 1 for i in ids)


async def test_executor_killed_between_commit_and_ack_runs_nothing_twice(
    system: System, database_url: str
) -> None:
    system.start("ingest")
    system.start("janitor")
    await wait_http(system.url)
    ids = await submit(system, [{"type": "recorded", "payload": {}} for _ in range(10)])
    system.start("executor-1", TASKSTREAM_CRASH_AT="executor.after_commit")
    assert system.wait("executor-1") == -signal.SIGKILL
    committed = (await status_counts(database_url))["succeeded"]
    assert committed >= 1
    system.start("executor-2")

    await wait_for(lambda: settled(database_url, len(ids)), timeout=30)
    assert (await status_counts(database_url)) == {"succeeded": len(ids)}
    assert all(system.runs()["done"][i] == 1 for i in ids)


async def test_redis_restarted_empty_mid_run_loses_no_task(
    private_system: tuple[System, PrivateRedis], database_url: str
) -> None:
    system, redis = private_system
    for name in ("ingest", "watcher", "janitor", "executor-1", "executor-2"):
        system.start(name, WORKER_POOL="8")
    await wait_http(system.url)
    tasks = [{"type": "recorded", "payload": {"ms": 300 if i % 4 == 0 else 0}} for i in range(400)]
    ids = await submit(system, tasks)

    async def some_done() -> bool:
        return sum(system.runs()["done"].values()) >= 50

    await wait_for(some_done, timeout=30)
    redis.restart_empty()
    await wait_for(lambda: settled(database_url, len(ids)), timeout=60)

    assert (await status_counts(database_url)) == {"succeeded": len(ids)}
    runs = system.runs()
    assert all(runs["done"][i] >= 1 for i in ids)
    # A handler runs to success twice only when Redis lost its delivery while it was running
    # (its result is then fenced); every task has exactly one recorded success.
    rerun = [i for i in ids if runs["done"][i] > 1]
    assert len(rerun) <= len(ids) // 4


@pytest.mark.parametrize("n", [int(os.environ.get("CHAOS_TASKS", "1000"))])
async def test_go_mix_with_an_executor_killed_and_redis_restarted(
    n: int, private_system: tuple[System, PrivateRedis], database_url: str
) -> None:
    """The Go scheduler's mix: 80 % noop, 10 % flaky failing twice, 5 % always failing, 5 %
    sleepers longer than the visibility timeout (heartbeats keep them alive)."""
    system, redis = private_system
    for name in ("ingest", "watcher", "janitor", "executor-1", "executor-2"):
        system.start(name, WORKER_POOL="32", PREFETCH="32")
    await wait_http(system.url)
    rng = random.Random(7)
    kinds = rng.choices(["noop", "flaky", "fail", "sleep"], weights=[80, 10, 5, 5], k=n)
    payloads = {
        "noop": {},
        "flaky": {"fail_first_n": 2},
        "fail": {"fail": True},
        "sleep": {"ms": 1500},  # longer than VIS_TIMEOUT_MS=1000
    }
    # The default 5 attempts: a crash costs the attempt it interrupts (a reclaim is a failed
    # attempt), so a flaky task failing twice still has room for the crashes of this run.
    tasks = [{"type": "recorded", "payload": payloads[k]} for k in kinds]
    ids = await submit(system, tasks)

    async def progress(k: int) -> bool:
        return sum(system.runs()["done"].values()) >= k

    started = time.monotonic()
    await wait_for(lambda: progress(n // 5), timeout=60)
    system.signal("executor-1", signal.SIGKILL)
    system.start("executor-3", WORKER_POOL="32", PREFETCH="32")
    await wait_for(lambda: progress(n // 2), timeout=60)
    redis.restart_empty()
    await wait_for(lambda: settled(database_url, n), timeout=120)

    rows = await fetch(database_url, "SELECT id::text, status FROM tasks")
    status = {r["id"]: r["status"] for r in rows}
    runs = system.runs()
    for task_id, kind in zip(ids, kinds, strict=True):
        if kind == "fail":
            assert status[task_id] == "dead"
        else:
            assert status[task_id] == "succeeded", (kind, task_id)
            assert runs["done"][task_id] >= 1
    dead = await fetch(database_url, "SELECT count(*) AS n FROM dead_letters")
    assert dead[0]["n"] == kinds.count("fail")
    counts = await status_counts(database_url)
    assert counts["queued"] == counts["running"] == 0
    # A handler ran to success twice only where a crash cost its task an attempt.
    outcomes = await fetch(
        database_url,
        "SELECT task_id::text AS id, outcome, count(*) AS n FROM task_attempts"
        " GROUP BY task_id, outcome",
    )
    crashed = {r["id"] for r in outcomes if r["outcome"] == "reclaimed"}
    reruns = [i for i in ids if runs["done"][i] > 1]
    assert set(reruns) <= crashed
    by_outcome: collections.Counter[str] = collections.Counter()
    for r in outcomes:
        by_outcome[r["outcome"]] += r["n"]
    logs = "".join(system.log(name) for name in system.procs)
    print(
        f"\nchaos run: {n} tasks in {time.monotonic() - started:.1f} s;"
        f" succeeded {counts['succeeded']}, dead {counts['dead']};"
        f" failed attempts {by_outcome['failed']}, reclaimed {by_outcome['reclaimed']};"
        f" handlers re-run after a crash {len(reruns)};"
        f" re-published after Redis loss {_logged(logs, 'watcher.repaired')},"
        f" orphans recovered {_logged(logs, 'janitor.orphans')}"
    )


def _logged(logs: str, event: str) -> int:
    """Sum of the counts in the JSON log lines of ``event`` (their message's first number)."""
    total = 0
    for line in logs.splitlines():
        if f'"event":"{event}"' in line:
            total += int(re.search(r"(\d+)", line.split('"msg":', 1)[1]).group(1))  # type: ignore[union-attr]
    return total


def _workflow(shape: str, i: int) -> dict[str, Any]:
    """One workflow of the crash mix: a diamond (one step failing once), a fan-out of 10 into a
    join, or a chain broken by a dead step with a clean-up step that runs anyway."""

    def s(name: str, *deps: str, **payload: Any) -> dict[str, Any]:
        return {"name": name, "type": "recorded", "payload": payload, "depends_on": list(deps)}

    if shape == "diamond":
        steps = [s("a", ms=200), s("b", "a"), s("c", "a", fail_first_n=1), s("d", "b", "c")]
    elif shape == "fan":
        leaves = [f"l{k}" for k in range(10)]
        steps = [s("root"), *(s(n, "root", ms=100) for n in leaves), s("join", *leaves)]
    else:
        steps = [s("a"), {**s("b", "a", fail=True), "max_attempts": 2}, s("c", "b"), s("d", "c"),
                 {**s("e", "a", "b"), "on_parent_failure": "run"}]  # fmt: skip
    return {"name": f"{shape}-{i}", "idempotency_key": f"crash-wf-{i}", "steps": steps}


EXPECTED = {
    "diamond": ("succeeded", dict.fromkeys("abcd", "succeeded")),
    "fan": (
        "succeeded",
        {"root": "succeeded", "join": "succeeded", **{f"l{k}": "succeeded" for k in range(10)}},
    ),
    "broken": (
        "failed",
        {"a": "succeeded", "b": "dead", "c": "cancelled", "d": "cancelled", "e": "succeeded"},
    ),
}


async def test_a_workflow_mix_through_sigkills_and_redis_loss_ends_every_step_right(
    private_system: tuple[System, PrivateRedis], database_url: str
) -> None:
    """Workflows while an executor and the watcher are SIGKILLed and Redis restarts empty:
    every step ends as its shape says, none starts before its parents succeeded, none that
    was cancelled ever ran, and a step's handler ran twice only where a crash cost an
    attempt."""
    system, redis = private_system
    for name in ("ingest", "watcher", "janitor", "executor-1", "executor-2"):
        system.start(name, WORKER_POOL="16")
    await wait_http(system.url)
    shapes = ["diamond", "fan", "broken"] * 10
    ids: dict[str, str] = {}
    for i, shape in enumerate(shapes):
        status, body = await post(system.url, "/v1/workflows", _workflow(shape, i))
        assert status == 201, body
        ids[body["id"]] = shape

    async def finished(k: int) -> bool:
        rows = await fetch(
            database_url, "SELECT count(*) AS n FROM workflows WHERE state <> 'running'"
        )
        return int(rows[0]["n"]) >= k

    async def some_done() -> bool:
        return sum(system.runs()["done"].values()) >= 40

    await wait_for(some_done, timeout=60)
    system.signal("executor-1", signal.SIGKILL)
    system.start("executor-3", WORKER_POOL="16")
    system.signal("watcher", signal.SIGKILL)
    system.start("watcher-2")
    await wait_for(lambda: finished(len(shapes) // 3), timeout=60)
    redis.restart_empty()
    await wait_for(lambda: finished(len(shapes)), timeout=120)

    workflows = {
        str(r["id"]): r["state"] for r in await fetch(database_url, "SELECT * FROM workflows")
    }
    steps = await fetch(
        database_url,
        "SELECT s.workflow_id::text AS wf, s.name, t.id::text AS id, t.status, t.started_at,"
        " t.finished_at FROM workflow_steps s JOIN tasks t ON t.id = s.task_id",
    )
    runs = system.runs()
    crashed = {r["id"] for r in await fetch(
        database_url, "SELECT DISTINCT task_id::text AS id FROM task_attempts"
        " WHERE outcome IN ('reclaimed', 'worker_lost')")}  # fmt: skip
    by_wf: dict[str, dict[str, Any]] = collections.defaultdict(dict)
    for r in steps:
        by_wf[r["wf"]][r["name"]] = r
    for wf, shape in ids.items():
        state, expected = EXPECTED[shape]
        assert workflows[wf] == state, (wf, shape)
        assert {n: r["status"] for n, r in by_wf[wf].items()} == expected, (wf, shape)
        for name, r in by_wf[wf].items():
            if r["status"] == "cancelled":
                assert runs["start"][r["id"]] == 0, (shape, name)  # never released
            if r["status"] == "succeeded" and runs["done"][r["id"]] > 1:
                assert r["id"] in crashed, (shape, name)  # ran twice only after a crash
    # None started before its parents ended (the first start of any attempt).
    early = await fetch(
        database_url,
        "SELECT c.id FROM workflow_edges e JOIN tasks p ON p.id = e.parent"
        " JOIN tasks c ON c.id = e.child"
        " CROSS JOIN LATERAL (SELECT min(started_at) AS first FROM ("
        "   SELECT started_at FROM task_attempts WHERE task_id = c.id"
        "   UNION ALL SELECT c.started_at) a) f"
        " WHERE f.first < p.finished_at",
    )
    assert early == []
    counts = await status_counts(database_url)
    assert counts["queued"] == counts["running"] == counts["waiting"] == 0
