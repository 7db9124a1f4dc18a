"""Running the services as real processes for the end-to-end tests."""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

FAST = {
    "VIS_TIMEOUT_MS": "1000",
    "WATCH_INTERVAL_MS": "50",
    "JANITOR_INTERVAL_MS": "200",
    "REPAIR_AFTER_MS": "1000",
    "REPAIR_INTERVAL_MS": "300",
    "RETRY_BASE_MS": "50",
    "RETRY_MAX_MS": "200",
    "RETRY_JITTER_MS": "20",
    "READ_BLOCK_MS": "100",
    "TASK_TIMEOUT_MS": "5000",
    "SHUTDOWN_GRACE_MS": "5000",
    "LOG_FORMAT": "json",
    "HANDLER_MODULES": "tests.e2e.handlers",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_block(n: int) -> int:
    """The first of ``n`` consecutive ports that are all free right now."""
    for _ in range(100):
        first = free_port()
        socks: list[socket.socket] = []
        try:
            for port in range(first, first + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
        except (OSError, OverflowError):  # taken, or past 65535
            continue
        finally:
            for s in socks:
                s.close()
        return first
    raise RuntimeError(f"no block of {n} free ports found")


class System:
    """The four services as processes against one database and one key namespace."""

    def __init__(self, tmp: Path, redis_url: str, database_url: str, namespace: str) -> None:
        self.tmp = tmp
        self.runs_file = tmp / "runs.txt"
        self.http_port = free_port()
        self.env = dict(
            os.environ,
            **FAST,
            REDIS_URL=redis_url,
            DATABASE_URL=database_url,
            TASKSTREAM_NAMESPACE=namespace,
            HTTP_PORT=str(self.http_port),
            HTTP_HOST="127.0.0.1",
            E2E_RUNS_FILE=str(self.runs_file),
            PYTHONPATH=str(ROOT),
        )
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, name: str, **env: str) -> subprocess.Popen[bytes]:
        service = name.split("-")[0]
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        full_env = dict(self.env, **env)
        if service == "executor":
            full_env.setdefault("CONSUMER_NAME", name)
        proc = subprocess.Popen(
            [sys.executable, "-m", "taskstream", service],
            env=full_env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def signal(self, name: str, sig: int) -> None:
        self.procs[name].send_signal(sig)

    def wait(self, name: str, timeout: float = 20) -> int:
        return self.procs[name].wait(timeout)

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def runs(self) -> dict[str, collections.Counter[str]]:
        """Per event (start, fail, done): how many times each task id had it."""
        out: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        if self.runs_file.exists():
            for line in self.runs_file.read_text().splitlines():
                event, task_id, _ = line.split()
                out[event][task_id] += 1
        return out


def wait_until(predicate: Any, timeout: float, what: str, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)
