"""Workflows from the Python client against a real ingest and executor: ``chain`` and
``group(...).then(...)`` build the same DAG as the step bodies, ``submit_workflow`` is
idempotent across a retry, ``wait_workflow`` returns the ended workflow with its results."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import taskstream
from taskstream.services.executor.executor import Executor
from taskstream.services.watcher.watcher import Watcher
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.handlers import Context, Registry
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.helpers import api_client

FAST = taskstream.RetryPolicy(retries=4, base_s=0.01, max_s=0.05)


def test_chain_and_group_build_the_dag_of_the_step_bodies() -> None:
    a, b, c, d = (taskstream.step(n, "t", {"n": n}) for n in "abcd")
    dag = taskstream.chain(a, taskstream.group(b, c), d)
    same = a.then(b, c).then(d)
    assert dag.steps() == same.steps()
    deps = {s["name"]: s["depends_on"] for s in dag.steps()}
    assert deps == {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    fan_in = taskstream.group(a, b).then(c)
    assert {s["name"]: s["depends_on"] for s in fan_in.steps()} == {
        "a": [], "b": [], "c": ["a", "b"]}  # fmt: skip
    with pytest.raises(taskstream.ValidationError) as caught:
        taskstream.step("x", "t", colour="red")
    assert caught.value.field == "colour"


@pytest.fixture
async def served(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> AsyncIterator[tuple[str, Any]]:
    registry = Registry()

    async def add(payload: Any, ctx: Context) -> Any:
        return sum(ctx.parents.values()) + payload.get("n", 0)

    registry.register("add", add)
    executor = Executor(config, db, streams, registry, metrics, consumer="c")
    watcher = Watcher(config, db, streams, metrics)

    async def work() -> None:
        while True:
            await watcher.run_once()
            await executor.run_once()
            await asyncio.sleep(0.01)

    async with api_client(config, db, streams, metrics) as (client, _):
        running = asyncio.create_task(work())
        yield str(client.make_url("")).rstrip("/"), running
        running.cancel()


async def test_submit_and_wait_for_a_workflow_from_the_async_client(
    served: tuple[str, Any],
) -> None:
    url, _ = served
    dag = taskstream.group(
        taskstream.step("one", "add", {"n": 1}), taskstream.step("two", "add", {"n": 2})
    ).then(taskstream.step("sum", "add"))
    async with taskstream.AsyncClient(url, retry=FAST) as client:
        wf = await client.submit_workflow(dag, name="sums", idempotency_key="wf-sums")
        assert wf.state == "running" and [s.name for s in wf.steps or []] == ["one", "two", "sum"]
        again = await client.submit_workflow(dag, name="sums", idempotency_key="wf-sums")
        assert again.id == wf.id
        done = await client.wait_workflow(wf.id, timeout=30)
        assert done.state == "succeeded" and done.results == {"one": 1, "two": 2, "sum": 3}
        assert done.step("sum").depends_on == ["one", "two"]
        with pytest.raises(taskstream.ValidationError) as caught:
            await client.submit_workflow([{"name": "x", "type": "add", "depends_on": ["y"]}])
        assert caught.value.field == "steps[0].depends_on"


async def test_the_sync_client_cancels_and_times_out(served: tuple[str, Any]) -> None:
    url, running = served
    running.cancel()  # nothing runs: the workflow stays where it is

    def use() -> None:
        with taskstream.Client(url, retry=FAST) as client:
            wf = client.submit_workflow(
                taskstream.chain(
                    taskstream.step("a", "add", delay_ms=3_600_000), taskstream.step("b", "add")
                )
            )
            with pytest.raises(taskstream.WorkflowTimeout):
                client.wait_workflow(wf.id, timeout=0.2)
            cancelled = client.cancel_workflow(wf.id)
            assert cancelled.state == "cancelled"
            assert client.wait_workflow(wf.id, timeout=5).state == "cancelled"

    await asyncio.to_thread(use)
