"""The operator CLI run in-process against the test's database and Redis namespace.

``main`` runs its own event loop (``asyncio.run``), so it is called in a worker thread while
the test's loop sets things up; the environment points it at this test's stores.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest

from taskstream.services.cli import main as cli_main
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.factories import enqueue, new_task
from tests.ops_helpers import make_dead


@pytest.fixture(autouse=True)
def environment(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", config.stores.redis_url)
    monkeypatch.setenv("DATABASE_URL", config.stores.database_url)
    monkeypatch.setenv("TASKSTREAM_NAMESPACE", config.stores.namespace)


async def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Exit code and stdout of ``taskstream <argv>``; anything on stderr fails the test."""
    code = await asyncio.to_thread(cli_main.main, list(argv))
    captured = capsys.readouterr()
    assert captured.err == "", captured.err
    return code, captured.out


async def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out = await run(capsys, *argv, "--json")
    assert code == 0
    return json.loads(out)


async def test_queues_json(
    config: Config, db: Database, streams: Streams, capsys: pytest.CaptureFixture[str]
) -> None:
    await enqueue(db, streams, [new_task(config, priority="high") for _ in range(4)])
    await streams.read("reader", {"high": 1})
    body = await run_json(capsys, "queues")
    [high] = [q for q in body["queues"] if q["priority"] == "high"]
    assert (high["length"], high["lag"], high["pending"], high["consumers"]) == (4, 3, 1, 1)

    code, out = await run(capsys, "queues")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["PRIORITY", "LENGTH", "LAG"]
    assert rows[1].split()[:5] == ["high", "4", "3", "1", "1"]


async def test_pending_with_min_idle_0s(
    config: Config, db: Database, streams: Streams, capsys: pytest.CaptureFixture[str]
) -> None:
    [task_id] = await enqueue(db, streams, [new_task(config, "email.send")])
    await streams.read("exec-7", {"default": 1})

    code, out = await run(capsys, "pending", "--min-idle", "0s")
    assert code == 0
    header, row = out.splitlines()
    assert "CONSUMER" in header and "DELIVERIES" in header
    assert "exec-7" in row and "email.send" in row and str(task_id) in row

    body = await run_json(capsys, "pending", "--min-idle", "0s", "--priority", "default")
    [entry] = body["entries"]
    assert (entry["task_id"], entry["consumer"], entry["deliveries"]) == (str(task_id), "exec-7", 1)
    none = await run_json(capsys, "pending", "--min-idle", "1h")
    assert none["entries"] == []
    assert (await run(capsys, "pending", "--consumer", "nobody"))[1].strip() == "no pending entries"


async def test_task_show(
    config: Config,
    db: Database,
    streams: Streams,
    metrics: Metrics,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ids = await make_dead(config, db, streams, metrics)
    task_id = str(ids["refused"][0])
    code, out = await run(capsys, "task", "show", task_id)
    assert code == 0
    assert task_id in out and "non_retryable" in out and "NonRetryableError: bad input" in out
    assert "ATTEMPT" in out  # the attempts table
    body = await run_json(capsys, "task", "show", task_id)
    assert body["task"]["status"] == "dead" and len(body["attempts"]) == 1

    missing = "00000000-0000-0000-0000-000000000000"
    code = await asyncio.to_thread(cli_main.main, ["task", "show", missing])
    assert code == 1
    assert capsys.readouterr().err.strip() == f"taskstream task: no task {missing}"


async def test_dlq_replay_is_a_dry_run_without_yes(
    config: Config,
    db: Database,
    streams: Streams,
    metrics: Metrics,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ids = await make_dead(config, db, streams, metrics)
    conn = await asyncpg.connect(config.stores.database_url)
    try:

        async def statuses() -> set[tuple[str, int]]:
            rows = await conn.fetch(
                "SELECT status, attempt FROM tasks WHERE id = ANY($1)", ids["exhausted"]
            )
            return {(r["status"], r["attempt"]) for r in rows}

        code, out = await run(capsys, "dlq", "replay", "--type", "always_fail")
        assert code == 0
        assert out.startswith("dry run: would replay 4 dead letter(s); nothing changed")
        assert all(str(i) in out for i in ids["exhausted"])
        assert await statuses() == {("dead", 1)}
        assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 7

        code, out = await run(capsys, "dlq", "replay", "--type", "always_fail", "--yes")
        assert code == 0 and out.startswith("replayed 4 dead letter(s)")
        assert await statuses() == {("queued", 2)}
        assert await conn.fetchval("SELECT count(*) FROM dead_letters") == 3

        again = await run_json(capsys, "dlq", "replay", "--type", "always_fail", "--yes")
        assert (again["dry_run"], again["count"]) == (False, 0)
    finally:
        await conn.close()


async def test_dlq_list_purge_and_consumers(
    config: Config,
    db: Database,
    streams: Streams,
    metrics: Metrics,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ids = await make_dead(config, db, streams, metrics)
    page = await run_json(capsys, "dlq", "list", "--priority", "high", "--limit", "1")
    assert len(page["dead_letters"]) == 1 and page["next_cursor"]
    rest = await run_json(
        capsys, "dlq", "list", "--priority", "high", "--cursor", page["next_cursor"]
    )
    seen = {page["dead_letters"][0]["task_id"], rest["dead_letters"][0]["task_id"]}
    assert seen == {str(i) for i in ids["unknown"]}

    code, out = await run(capsys, "dlq", "purge", "--id", str(ids["refused"][0]))
    assert code == 0 and out.startswith("dry run: would purge 1")
    purged = await run_json(capsys, "dlq", "purge", "--id", str(ids["refused"][0]), "--yes")
    assert purged["count"] == 1

    code, out = await run(capsys, "consumers")
    assert code == 0 and "test-1" in out  # the executor that made the dead letters
    removed = await run_json(capsys, "consumers", "--remove-dead", "--min-idle", "0s")
    assert {c["name"] for c in removed["removed"]} == {"test-1"}
    assert removed["kept_busy"] == []
