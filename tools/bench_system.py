"""The benchmark's system: the machine it runs on, and the services as child processes.

The services are started with ``tools.up.Child`` (as ``taskstream up`` does), one role
at a time, so a scenario can load the queues before any executor runs. They stop in the order
``up`` uses: ingest, executors, then the movers.
"""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import msgspec

from taskstream.shared.errors import TaskstreamError
from tools.supervisor import STOP_TIMEOUT_S as STOP_TIMEOUT
from tools.supervisor import Child
from tools.up import ORDER, available


class BenchError(TaskstreamError):
    """The benchmark cannot go on (a service died or never became ready)."""


class Machine(msgspec.Struct, kw_only=True):
    cores: int
    cpu: str
    ram_gib: float
    python: str
    redis: str
    postgres: str
    load_avg: float  # 1-minute load average when the bench started: others' work skews figures

    def describe(self) -> str:
        return (
            f"{self.cores} cores, {self.cpu}, {self.ram_gib:.1f} GiB RAM;"
            f" load average {self.load_avg:.2f} at the start"
        )


def machine(redis_url: str, postgres: str) -> Machine:
    return Machine(
        cores=os.cpu_count() or 0,
        cpu=_proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        ram_gib=int((_proc_field("/proc/meminfo", "MemTotal") or "0 kB").split()[0]) / 2**20,
        python=platform.python_version(),
        redis=redis_version(redis_url),
        postgres=postgres,
        load_avg=os.getloadavg()[0],
    )


def _proc_field(path: str, name: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    except OSError:
        pass
    return None


def redis_version(url: str) -> str:
    """``redis_version`` from INFO server, over a raw socket (only shared/streams.py uses
    redis-py); "unknown" when Redis wants a password or does not answer."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 2) as s:
            s.sendall(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
            reply = b""
            while b"redis_version:" not in reply or not reply.endswith(b"\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return "unknown"
    for line in reply.decode(errors="replace").splitlines():
        if line.startswith("redis_version:"):
            return line.split(":", 1)[1]
    return "unknown"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float | None:
    """Resident memory of a process (VmRSS), MiB; None once it is gone."""
    value = _proc_field(f"/proc/{pid}/status", "VmRSS")
    return int(value.split()[0]) / 1024 if value else None


class Cluster:
    """The services of one benchmark run, each its own process."""

    def __init__(self, env: dict[str, str], executors: int) -> None:
        self.env = env
        self.executors = executors
        self.children: list[Child] = []

    def start(self, service: str) -> None:
        """Start ``service`` (``executor``: all N of them) if installed and not running."""
        if service not in available() or any(c.name.startswith(service) for c in self.children):
            return
        names = [f"executor-{i}" for i in range(1, self.executors + 1)]
        for name in names if service == "executor" else [service]:
            env = dict(self.env)
            if service == "executor":
                env["CONSUMER_NAME"] = f"{socket.gethostname()}-bench-{name}"
            self.children.append(Child(name, env))

    def running(self, service: str) -> bool:
        return any(c.name.split("-")[0] == service for c in self.children)

    def check(self) -> None:
        """Raise ``BenchError`` if a service has exited."""
        for child in self.children:
            if child.proc.poll() is not None:
                raise BenchError(f"{child.name} exited with {child.proc.returncode}")

    def rss(self) -> dict[str, float]:
        """Resident memory of each running service, MiB."""
        out: dict[str, float] = {}
        for child in self.children:
            value = rss_mib(child.proc.pid)
            if value is not None:
                out[child.name] = round(value, 1)
        return out

    def stop_service(self, service: str) -> None:
        """Stop one service (``executor``: all of them) gracefully."""
        group = [c for c in self.children if c.name.split("-")[0] == service]
        for child in group:
            child.terminate()
        for child in group:
            child.wait(STOP_TIMEOUT)
        self.children = [c for c in self.children if c not in group]

    def stop(self) -> None:
        """Stop every service gracefully, in ``up``'s order (ingest first)."""
        for service in ORDER:
            group = [c for c in self.children if c.name.split("-")[0] == service]
            for child in group:
                child.terminate()
            for child in group:
                child.wait(STOP_TIMEOUT)
        self.children = []


async def wait_ready(url: str, cluster: Cluster, timeout: float = 30.0) -> None:
    """Wait until ingest's ``/readyz`` answers 200."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while True:
            cluster.check()
            try:
                async with session.get(url.rstrip("/") + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"ingest at {url} not ready after {timeout:.0f} s")
            await asyncio.sleep(0.1)
