"""`make run` supervises its services: SIGKILLed ones come back under their own names while
tasks keep flowing, one that cannot start stops the run naming it, a killed supervisor leaves
no service behind, and a second run in the same state directory refuses."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.e2e.system import ROOT, free_port_block
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e


class Up:
    """``python -m tools up`` as a process, its output kept in a file."""

    def __init__(self, tmp: Path, database_url: str, namespace: str, **env: str) -> None:
        from tests.conftest import REDIS_URL

        self.port = free_port_block(5)
        self.log = tmp / "up.log"
        self.env = dict(
            os.environ,
            REDIS_URL=REDIS_URL,
            DATABASE_URL=database_url,
            TASKSTREAM_NAMESPACE=namespace,
            HTTP_PORT=str(self.port),
            HTTP_HOST="127.0.0.1",
            LOG_LEVEL="WARNING",
            VIS_TIMEOUT_MS="1000",
            READ_BLOCK_MS="100",
            **env,
        )
        self.argv = [sys.executable, "-m", "tools", "up", "--executors", "2", "--no-prometheus",
                     "--metrics-port", str(self.port + 1), "--state-dir", str(tmp)]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> subprocess.Popen[bytes]:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )
        return self.proc

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def pids(self) -> dict[str, int]:
        """The services' current pids, from the supervisor's lines."""
        out = self.output()
        found: dict[str, int] = {}
        match = re.search(r"\(pids: (.*)\)", out)
        if match:
            for part in match.group(1).split(", "):
                name, pid = part.rsplit(" ", 1)
                found[name] = int(pid)
        for name, pid in re.findall(r"taskstream up: (\S+) restarted \(pid (\d+)\)", out):
            found[name] = int(pid)
        return found

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


async def _ready(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as s, s.get(f"{url}/readyz") as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


async def _submit_until_taken(url: str, key: str) -> None:
    while True:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s,
                s.post(f"{url}/v1/tasks", json={"type": "noop", "idempotency_key": key}) as r,
            ):
                if r.status in (200, 201):
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.1)


async def test_killed_services_are_restarted_and_every_task_succeeds_once(
    tmp_path: Path, database_url: str, namespace: str
) -> None:
    up = Up(tmp_path, database_url, namespace)
    up.start()
    try:
        await wait_for(lambda: _ready(up.url), timeout=30)
        keys = [f"steady-{i}" for i in range(150)]
        restarted: list[str] = []

        async def kill(name: str) -> None:
            before = up.pids()[name]
            os.kill(before, signal.SIGKILL)

            async def back() -> bool:
                pid = up.pids().get(name)
                return pid is not None and pid != before and _alive(pid)

            await wait_for(back, timeout=15)
            restarted.append(name)

        async def steady() -> None:
            for key in keys:
                await _submit_until_taken(up.url, key)
                await asyncio.sleep(0.02)

        flow = asyncio.create_task(steady())
        for name in ("executor-1", "watcher", "ingest"):
            await asyncio.sleep(0.8)
            await kill(name)
        await flow

        async def all_succeeded() -> bool:
            conn = await asyncpg.connect(database_url)
            try:
                n = await conn.fetchval("SELECT count(*) FROM tasks WHERE status = 'succeeded'")
            finally:
                await conn.close()
            return bool(n == len(keys))

        await wait_for(all_succeeded, timeout=30)
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch("SELECT idempotency_key, status FROM tasks")
        finally:
            await conn.close()
        assert sorted(r["idempotency_key"] for r in rows) == sorted(keys)  # none twice
        assert restarted == ["executor-1", "watcher", "ingest"]
        assert up.proc is not None
        up.proc.send_signal(signal.SIGINT)
        assert up.proc.wait(60) == 0
        assert all(not _alive(pid) for pid in up.pids().values())
    finally:
        up.stop()
    out = up.output()
    for name in ("executor-1", "watcher", "ingest"):
        assert re.search(rf"{name} exited with signal SIGKILL .*restarting in", out), name


async def test_a_service_that_fails_at_once_stops_the_run_with_its_name(
    tmp_path: Path, database_url: str, namespace: str
) -> None:
    up = Up(tmp_path, database_url, namespace, HANDLER_MODULES="no_such_module_here")
    up.argv += ["--backoff", "0.05"]
    proc = up.start()
    try:
        assert await asyncio.to_thread(proc.wait, 60) == 1
    finally:
        up.stop()
    out = up.output()
    line = next(x for x in out.splitlines() if "times in a row" in x)
    assert re.match(r"taskstream up: executor-\d failed 5 times in a row", line), line
    assert "no_such_module_here" in out.split(line, 1)[1]  # its last lines follow


async def test_a_killed_supervisor_leaves_no_service_and_one_run_at_a_time(
    tmp_path: Path, database_url: str, namespace: str
) -> None:
    up = Up(tmp_path, database_url, namespace)
    proc = up.start()
    try:
        await wait_for(lambda: _ready(up.url), timeout=30)
        second = await asyncio.to_thread(
            subprocess.run, up.argv, env=up.env, cwd=ROOT, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert second.returncode == 1
        assert second.stderr.strip().splitlines()[-1].startswith("taskstream up: already running")
        pids = up.pids()
        assert len(pids) == 5
        proc.kill()
        proc.wait()

        async def all_gone() -> bool:
            return not any(_alive(pid) for pid in pids.values())

        await wait_for(all_gone, timeout=30)
    finally:
        up.stop()
    # The port is free again: a new run can start.
    again = Up(tmp_path, database_url, namespace)
    again.port, again.argv, again.env = up.port, up.argv, up.env
    again.start()
    try:
        await wait_for(lambda: _ready(again.url), timeout=30)
    finally:
        assert again.proc is not None
        again.proc.send_signal(signal.SIGINT)
        await asyncio.to_thread(again.proc.wait, 60)
        again.stop()
