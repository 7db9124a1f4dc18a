"""``taskstream schedules`` and ``taskstream queues pause|resume``, run in-process (and, for
the concurrent applies, as processes) against the test's database and Redis namespace."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from taskstream.services.cli import main as cli_main
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.streams import Streams
from tests.e2e.system import ROOT
from tests.helpers import query

FILE = {
    "schedules": {
        "nightly-report": {
            "cron": "@daily",
            "timezone": "America/New_York",
            "task": {"type": "report.build", "payload": {"kind": "daily"}},
            "catchup": "6h",
        },
        "heartbeat": {"every": "30s", "task": {"type": "noop"}, "overlap": "allow"},
    }
}


@pytest.fixture(autouse=True)
def environment(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", config.stores.redis_url)
    monkeypatch.setenv("DATABASE_URL", config.stores.database_url)
    monkeypatch.setenv("TASKSTREAM_NAMESPACE", config.stores.namespace)


async def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(cli_main.main, list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def run_ok(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, out, err = await run(capsys, *argv)
    assert (code, err) == (0, ""), err
    return out


def write(tmp_path: Path, doc: Any, name: str = "schedules.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return str(path)


async def test_apply_twice_then_list_show_pause_resume_trigger_delete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], streams: Streams, db: Database
) -> None:
    await streams.ensure_groups()
    path = write(tmp_path, FILE)
    out = await run_ok(capsys, "schedules", "apply", path)
    assert out.splitlines()[0] == "2 created, 0 updated, 0 unchanged, 0 deleted"
    out = await run_ok(capsys, "schedules", "apply", path)
    assert out.splitlines()[0] == "0 created, 0 updated, 2 unchanged, 0 deleted"

    listed = json.loads(await run_ok(capsys, "schedules", "list", "--json"))
    assert [s["name"] for s in listed["schedules"]] == ["heartbeat", "nightly-report"]
    text = await run_ok(capsys, "schedules", "list")
    header, *rows = text.splitlines()
    assert header.split()[:3] == ["NAME", "STATE", "SCHEDULE"]
    assert rows[1].split()[:5] == ["nightly-report", "active", "cron", "0", "0"]

    show = await run_ok(capsys, "schedules", "show", "nightly-report")
    assert "America/New_York" in show and "next runs" in show
    out = await run_ok(capsys, "schedules", "pause", "nightly-report", "--note", "quarter end")
    assert out.strip() == "paused nightly-report (quarter end)"
    assert (
        json.loads(await run_ok(capsys, "schedules", "show", "nightly-report", "--json"))["note"]
        == "quarter end"
    )
    # Applying the file again keeps the pause made by hand.
    await run_ok(capsys, "schedules", "apply", path)
    view = json.loads(await run_ok(capsys, "schedules", "show", "nightly-report", "--json"))
    assert view["state"] == "paused"
    out = await run_ok(capsys, "schedules", "resume", "nightly-report")
    assert out.startswith("resumed nightly-report; next run ")

    run_ = json.loads(await run_ok(capsys, "schedules", "trigger", "heartbeat", "--json"))
    task = await db.get_task(__import__("uuid").UUID(run_["task_id"]))
    assert task is not None and task.schedule == "heartbeat"
    assert [f["t"] for _, f in await streams.entries("default")] == [run_["task_id"]]

    out = await run_ok(capsys, "schedules", "delete", "heartbeat")
    assert out.strip() == "deleted heartbeat"
    code, _, err = await run(capsys, "schedules", "show", "heartbeat")
    assert (code, err.strip()) == (1, "taskstream schedules show: no schedule heartbeat")

    # --prune deletes what the file does not name; --dry-run first says so.
    smaller = write(
        tmp_path, {"schedules": {"heartbeat": FILE["schedules"]["heartbeat"]}}, "s.json"
    )
    out = await run_ok(capsys, "schedules", "apply", smaller, "--prune", "--dry-run")
    assert out.splitlines() == [
        "dry run: would make 1 created, 0 updated, 0 unchanged, 1 deleted",
        "  created  heartbeat",
        "  deleted  nightly-report",
    ]
    await run_ok(capsys, "schedules", "apply", smaller, "--prune")
    listed = json.loads(await run_ok(capsys, "schedules", "list", "--json"))
    assert [s["name"] for s in listed["schedules"]] == ["heartbeat"]


async def test_a_bad_file_or_argument_is_one_line_naming_it_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], db: Database
) -> None:
    bad = write(tmp_path, {"schedules": {"x": {"every": "often", "task": {"type": "noop"}}}})
    code, out, err = await run(capsys, "schedules", "apply", bad)
    assert code == 2 and out == ""
    assert err.startswith("taskstream schedules apply: schedules.x.every: 'often' is not a dur")
    (tmp_path / "broken.json").write_text("{")
    code, _, err = await run(capsys, "schedules", "apply", str(tmp_path / "broken.json"))
    assert code == 2 and "is not JSON" in err
    code, _, err = await run(capsys, "schedules", "apply", str(tmp_path / "absent.json"))
    assert code == 2 and "cannot read" in err
    code, _, err = await run(capsys, "schedules", "frobnicate")
    assert code == 2 and err.startswith("taskstream schedules: ")
    assert await db.list_schedules() == []


async def test_apply_reads_yaml_when_pyyaml_is_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], db: Database
) -> None:
    yaml = pytest.importorskip("yaml")
    path = tmp_path / "schedules.yaml"
    path.write_text(yaml.safe_dump(FILE))
    await run_ok(capsys, "schedules", "apply", str(path))
    assert [s.name for s in await db.list_schedules()] == ["heartbeat", "nightly-report"]


async def test_two_apply_processes_at_once_make_one_copy_of_each(
    tmp_path: Path, config: Config
) -> None:
    path = write(tmp_path, FILE)
    env = dict(
        os.environ,
        DATABASE_URL=config.stores.database_url,
        REDIS_URL=config.stores.redis_url,
        TASKSTREAM_NAMESPACE=config.stores.namespace,
        PYTHONPATH=str(ROOT),
    )
    argv = [sys.executable, "-m", "taskstream", "schedules", "apply", path, "--json"]
    pipe = asyncio.subprocess.PIPE
    procs = [
        await asyncio.create_subprocess_exec(*argv, env=env, stdout=pipe, stderr=pipe)
        for _ in range(3)
    ]
    results = []
    for p in procs:
        out, err = await p.communicate()
        assert p.returncode == 0, err.decode()
        results.append(json.loads(out))
    assert sorted(len(r["created"]) for r in results) == [0, 0, 2]
    assert all(not r["updated"] for r in results)
    rows = await query(config.stores.database_url, "SELECT name FROM schedules ORDER BY name")
    assert [r["name"] for r in rows] == ["heartbeat", "nightly-report"]


async def test_queues_pause_and_resume_and_the_paused_state_in_queues(
    capsys: pytest.CaptureFixture[str], streams: Streams
) -> None:
    await streams.ensure_groups()
    out = await run_ok(capsys, "queues", "pause", "high", "--note", "deploy in progress")
    assert out.strip() == "paused priority high (deploy in progress)"
    out = await run_ok(capsys, "queues", "pause", "--type", "payments.charge")
    assert out.strip() == "paused type payments.charge"
    text = await run_ok(capsys, "queues")
    header, *rows = text.splitlines()
    assert header.split()[-1] == "PAUSED"
    assert rows[1].split()[0] == "high" and rows[1].split()[-1] == "paused"
    assert rows[2].split()[-1] != "paused"
    assert "high is paused: deploy in progress" in text
    assert "payments.charge" in text.split("paused task types:")[1]
    body = json.loads(await run_ok(capsys, "queues", "--json"))
    assert [t["type"] for t in body["paused_types"]] == ["payments.charge"]
    out = await run_ok(capsys, "queues", "resume", "high")
    assert out.strip() == "resumed priority high"
    out = await run_ok(capsys, "queues", "resume", "high")
    assert out.strip() == "priority high was not paused"
    for argv in (
        ("queues", "pause"),
        ("queues", "pause", "high", "--type", "x"),
        ("queues", "pause", "urgent"),
        ("queues", "pause", "--type", "no spaces"),
    ):
        code, _, err = await run(capsys, *argv)
        assert code == 2 and err.startswith("taskstream queues: "), (argv, err)
