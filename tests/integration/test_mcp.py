"""``taskstream mcp`` driven by the MCP SDK's own client, over standard input/output and over
streamable HTTP, against a real ingest (Redis and Postgres): the tools and their schemas, a
submit → get round trip, a replay dry run then a confirmed one, an API error as a tool
error."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult

from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.e2e.system import free_port
from tests.helpers import api_client, wait_for
from tests.ops_helpers import executor

TOOLS = {
    "submit_task",
    "get_task",
    "list_tasks",
    "cancel_task",
    "queue_overview",
    "pending_entries",
    "list_dead_letters",
    "replay_dead_letters",
    "list_schedules",
    "upsert_schedule",
    "pause_schedule",
    "resume_schedule",
    "submit_workflow",
    "get_workflow",
}


@pytest.fixture
async def api_url(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> AsyncIterator[str]:
    await streams.ensure_groups()
    async with api_client(config, db, streams, metrics) as (client, _):
        yield str(client.make_url("")).rstrip("/")


def _env(api_url: str) -> dict[str, str]:
    return {**os.environ, "TASKSTREAM_URL": api_url, "TASKSTREAM_API_KEY": ""}


Connect = Callable[[], Client]


@pytest.fixture(params=["stdio", "http"])
async def connect(request: pytest.FixtureRequest, api_url: str) -> AsyncIterator[Connect]:
    """Connects the SDK's client (entered in the test's own task: anyio's scopes must be left
    in the task that entered them): a server process of its own over stdio, or one server
    process serving streamable HTTP."""
    command = [sys.executable, "-m", "taskstream", "mcp"]
    if request.param == "stdio":
        params = StdioServerParameters(command=command[0], args=command[1:], env=_env(api_url))
        yield lambda: Client(params)
        return
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *command,
        "--http",
        f"127.0.0.1:{port}",
        env=_env(api_url),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await wait_for(lambda: _listening(port, proc), timeout=30, every=0.1)
        yield lambda: Client(f"http://127.0.0.1:{port}/mcp")
    finally:
        proc.terminate()
        await proc.wait()


async def _listening(port: int, proc: asyncio.subprocess.Process) -> bool:
    assert proc.returncode is None, f"taskstream mcp --http exited {proc.returncode}"
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def body(result: CallToolResult) -> Any:
    assert not result.is_error, result.content
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(result.content[0].text)  # type: ignore[union-attr]


def error_text(result: CallToolResult) -> str:
    assert result.is_error
    return " ".join(getattr(c, "text", "") for c in result.content)


async def test_the_tools_and_their_schemas(connect: Connect) -> None:
    async with connect() as mcp:
        listed = {t.name: t for t in (await mcp.list_tools()).tools}
        assert set(listed) == TOOLS
        for tool in listed.values():
            assert tool.description and len(tool.description) > 40, tool.name
        submit = listed["submit_task"].input_schema
        assert submit["required"] == ["type"]
        props = submit["properties"]
        assert {
            "type",
            "payload",
            "priority",
            "idempotency_key",
            "delay_ms",
            "max_attempts",
        } == set(props)
        assert "critical" in json.dumps(props["priority"])
        assert "retry" in props["idempotency_key"]["description"]
        replay = listed["replay_dead_letters"].input_schema["properties"]
        assert replay["confirm"]["default"] is False
        assert listed["list_tasks"].input_schema["properties"]["limit"]["maximum"] == 50


async def test_submit_then_get_round_trip_and_a_retry_does_not_duplicate(
    connect: Connect, config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    async with connect() as mcp:
        args = {"type": "noop", "payload": {"order": 7}, "priority": "high"}
        first = body(await mcp.call_tool("submit_task", args))
        assert first["status"] == "queued" and first["idempotency_key"].startswith("mcp-")
        again = body(await mcp.call_tool("submit_task", args))  # a model's retry
        assert again["id"] == first["id"]
        other = body(await mcp.call_tool("submit_task", {**args, "payload": {"order": 8}}))
        assert other["id"] != first["id"]
        await executor(config, db, streams, metrics).run_once()
        task = body(await mcp.call_tool("get_task", {"task_id": first["id"]}))
        assert (task["status"], task["payload"], task["priority"]) == (
            "succeeded",
            {"order": 7},
            "high",
        )
        listed = body(await mcp.call_tool("list_tasks", {"status": "succeeded", "limit": 5}))
        assert [t["id"] for t in listed["tasks"]] == [other["id"], first["id"]]
        overview = body(await mcp.call_tool("queue_overview", {}))
        assert [q["priority"] for q in overview["queues"]][:2] == ["critical", "high"]


async def test_a_long_payload_is_cut_with_a_note(connect: Connect) -> None:
    async with connect() as mcp:
        made = body(
            await mcp.call_tool("submit_task", {"type": "noop", "payload": {"x": "y" * 9000}})
        )
        task = body(await mcp.call_tool("get_task", {"task_id": made["id"]}))
        assert task["payload"] is None and "cut: the payload is" in task["payload_cut"]
        assert len(task["payload_cut"]) < 2100


async def test_replay_is_a_dry_run_until_confirmed(
    connect: Connect, config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    async with connect() as mcp:
        made = body(await mcp.call_tool("submit_task", {"type": "always_fail", "max_attempts": 1}))
        await executor(config, db, streams, metrics).run_once()
        letters = body(await mcp.call_tool("list_dead_letters", {"type": "always_fail"}))
        assert [d["task_id"] for d in letters["dead_letters"]] == [made["id"]]

        dry = body(await mcp.call_tool("replay_dead_letters", {"type": "always_fail"}))
        assert (dry["dry_run"], dry["count"]) == (True, 1)
        assert (await db.get_task(uuid.UUID(made["id"]))).status == "dead"  # type: ignore[union-attr]

        done = body(
            await mcp.call_tool("replay_dead_letters", {"task_ids": [made["id"]], "confirm": True})
        )
        assert (done["dry_run"], done["count"]) == (False, 1)
        assert (await db.get_task(uuid.UUID(made["id"]))).status == "queued"  # type: ignore[union-attr]
        nothing = await mcp.call_tool("replay_dead_letters", {})
        assert "name the dead letters" in error_text(nothing)


async def test_an_api_error_is_a_tool_error_with_the_api_message(connect: Connect) -> None:
    async with connect() as mcp:
        missing = str(uuid.uuid4())
        result = await mcp.call_tool("get_task", {"task_id": missing})
        text = error_text(result)
        assert "HTTP 404 not_found" in text and missing in text
        bad = await mcp.call_tool("submit_task", {"type": "noop", "max_attempts": 0})
        assert bad.is_error  # refused by the schema before any request
        conflict = await mcp.call_tool(
            "submit_task", {"type": "noop", "payload": {"a": 1}, "idempotency_key": "k1"}
        )
        assert not conflict.is_error
        other = await mcp.call_tool(
            "submit_task", {"type": "noop", "payload": {"a": 2}, "idempotency_key": "k1"}
        )
        assert "HTTP 409 idempotency_conflict" in error_text(other)


async def test_schedules_upsert_list_pause_and_resume(connect: Connect) -> None:
    async with connect() as mcp:
        args = {"name": "nightly", "task_type": "report", "cron": "0 3 * * *",
                "timezone": "Europe/Paris", "payload": {"kind": "daily"}}  # fmt: skip
        made = body(await mcp.call_tool("upsert_schedule", args))
        assert (made["change"], made["state"], made["task"]["type"]) == (
            "created",
            "active",
            "report",
        )
        assert made["next_runs"]
        again = body(await mcp.call_tool("upsert_schedule", args))
        assert again["change"] == "unchanged"
        paused = body(await mcp.call_tool("pause_schedule", {"name": "nightly", "note": "audit"}))
        assert (paused["state"], paused["note"]) == ("paused", "audit")
        listed = body(await mcp.call_tool("list_schedules", {}))
        assert [(x["name"], x["state"]) for x in listed["schedules"]] == [("nightly", "paused")]
        resumed = body(await mcp.call_tool("resume_schedule", {"name": "nightly"}))
        assert resumed["state"] == "active"
        bad = await mcp.call_tool("upsert_schedule", {**args, "cron": "61 * * * *"})
        assert "HTTP 422" in error_text(bad) and "cron" in error_text(bad)
        missing = await mcp.call_tool("pause_schedule", {"name": "nope"})
        assert "HTTP 404 not_found" in error_text(missing)


async def test_a_workflow_submitted_then_followed_to_its_end(
    connect: Connect, config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    from taskstream.services.watcher.watcher import Watcher

    async with connect() as mcp:
        steps = [
            {"name": "fetch", "type": "noop", "payload": {"url": "x"}},
            {"name": "report", "type": "noop", "depends_on": ["fetch"]},
        ]
        made = body(await mcp.call_tool("submit_workflow", {"steps": steps, "name": "crawl"}))
        assert made["state"] == "running" and [s["name"] for s in made["steps"]] == [
            "fetch",
            "report",
        ]
        again = body(await mcp.call_tool("submit_workflow", {"steps": steps, "name": "crawl"}))
        assert again["id"] == made["id"]  # a retried call: the same workflow
        watcher, run = Watcher(config, db, streams, metrics), executor(config, db, streams, metrics)
        for _ in range(3):
            await watcher.run_once()
            await run.run_once()
        done = body(await mcp.call_tool("get_workflow", {"workflow_id": made["id"]}))
        assert done["state"] == "succeeded"
        assert [(s["name"], s["status"]) for s in done["steps"]] == [
            ("fetch", "succeeded"),
            ("report", "succeeded"),
        ]
        cycle = [{"name": "a", "type": "noop", "depends_on": ["b"]},
                 {"name": "b", "type": "noop", "depends_on": ["a"]}]  # fmt: skip
        refused = await mcp.call_tool("submit_workflow", {"steps": cycle})
        assert "HTTP 422" in error_text(refused)
        listed = {t.name: t for t in (await mcp.list_tools()).tools}
        step_schema = json.dumps(listed["submit_workflow"].input_schema)
        assert "depends_on" in step_schema and "on_parent_failure" in step_schema


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_a_scope_error_is_a_tool_error(
    transport: str, config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    from taskstream.shared import config as config_mod

    keyed = config_mod.replace(config, auth_mode="keys", api_key_cache_ms=0)
    created = await db.create_api_key("acme", ["tasks:read", "ops:read"], name="agent")
    assert created is not None
    await streams.ensure_groups()
    async with api_client(keyed, db, streams, metrics) as (client, _):
        url = str(client.make_url("")).rstrip("/")
        env = {**_env(url), "TASKSTREAM_API_KEY": created.key}
        command = [sys.executable, "-m", "taskstream", "mcp"]
        if transport == "stdio":
            server = StdioServerParameters(command=command[0], args=command[1:], env=env)
            async with Client(server) as mcp:
                await _read_only_agent(mcp)
            return
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            *command, "--http", f"127.0.0.1:{port}", env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await wait_for(lambda: _listening(port, proc), timeout=30, every=0.1)
            async with Client(f"http://127.0.0.1:{port}/mcp") as mcp:
                await _read_only_agent(mcp)
        finally:
            proc.terminate()
            await proc.wait()


async def _read_only_agent(mcp: Client) -> None:
    """A key with tasks:read and ops:read: it reads, and its writes are the API's 403."""
    refused = await mcp.call_tool("submit_task", {"type": "noop"})
    assert "HTTP 403 forbidden" in error_text(refused) and "tasks:write" in error_text(refused)
    replay = await mcp.call_tool("replay_dead_letters", {"all": True, "confirm": True})
    assert "HTTP 403 forbidden" in error_text(replay)
    assert body(await mcp.call_tool("list_tasks", {}))["tasks"] == []
    assert body(await mcp.call_tool("queue_overview", {}))["queues"]
