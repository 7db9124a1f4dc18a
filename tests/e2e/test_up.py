"""`taskstream up` (what `make run` runs): the whole system comes up, does work, and stops
cleanly on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.system import ROOT, free_port_block
from tests.e2e.test_services import post, wait_http
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e


async def test_up_runs_every_service_and_stops_them_on_ctrl_c(
    tmp_path: Path, database_url: str, namespace: str
) -> None:
    from tests.conftest import REDIS_URL

    port = free_port_block(5)  # the API, then a metrics port for each of the 4 others
    metrics = port + 1
    env = dict(
        os.environ,
        REDIS_URL=REDIS_URL,
        DATABASE_URL=database_url,
        TASKSTREAM_NAMESPACE=namespace,
        HTTP_PORT=str(port),
        HTTP_HOST="127.0.0.1",
        LOG_LEVEL="WARNING",
    )
    argv = [sys.executable, "-m", "tools", "up", "--executors", "2", "--no-prometheus",
            "--metrics-port", str(metrics), "--state-dir", str(tmp_path)]  # fmt: skip
    proc = _start(argv, env, tmp_path / "up.log")
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_http(base)
        status, body = await post(base, "/v1/tasks", {"type": "noop"})
        assert status == 201

        async def succeeded() -> bool:
            async with (
                aiohttp.ClientSession() as s,
                s.get(f"{base}/v1/tasks/{body['id']}") as r,
            ):
                return bool((await r.json())["status"] == "succeeded")

        await wait_for(succeeded, timeout=15)
        # Every service answers on its metrics port: 2 executors, the watcher, the janitor.
        # (they start side by side, so each is awaited: ingest can be up before the janitor)
        for p in range(metrics, metrics + 4):
            await wait_http(f"http://127.0.0.1:{p}")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = (tmp_path / "up.log").read_text()
    assert "taskstream is up" in output and "stopping" in output
    with pytest.raises(aiohttp.ClientError):
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/healthz"):
            pass


def _start(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
