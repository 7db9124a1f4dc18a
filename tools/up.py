"""``taskstream up``: the whole system on one machine, until Ctrl-C.

Finds or starts Redis and Postgres (``tools.stores``), creates and migrates the
database, then runs every service as its own process: ingest, N executors (stable consumer
names, so a restart takes back its own pending entries), and the watcher and janitor when
installed, and Prometheus (with the alert rules) when it is installed. Ctrl-C stops them in
order (ingest first, then executors, then the movers), then the stores it started.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from taskstream.shared import config as config_mod
from taskstream.shared import db
from taskstream.shared.errors import TaskstreamError
from tools.stores import StoreError, ensure

ORDER = ("ingest", "executor", "watcher", "janitor")
STOP_ORDER = (*ORDER, "prometheus")
PROMETHEUS_PORT = 9090
RULES = Path(__file__).resolve().parents[1] / "deploy" / "prometheus" / "alerts.yml"
METRICS_BASE_PORT = 9101
STOP_TIMEOUT = 60.0


class Child:
    def __init__(self, name: str, env: dict[str, str], argv: list[str] | None = None) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            argv or [sys.executable, "-m", "taskstream", name.split("-")[0]],
            env=env,
            start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
        )

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def available() -> list[str]:
    return [s for s in ORDER if importlib.util.find_spec(f"taskstream.services.{s}") is not None]


def up_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="taskstream up", description=__doc__)
    parser.add_argument("--executors", type=int, default=2, help="executor processes")
    parser.add_argument("--state-dir", type=Path, default=Path(".local"))
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=METRICS_BASE_PORT,
        help="the first of the services' metrics ports (one each, upwards)",
    )
    parser.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus")
    args = parser.parse_args(list(argv))
    if args.executors < 1:
        parser.error("--executors must be at least 1")
    try:
        config = config_mod.load()
        stores = ensure(
            config.stores.redis_url, config.stores.database_url, args.state_dir.resolve()
        )
    except (TaskstreamError, StoreError) as exc:
        print(f"taskstream up: {exc}", file=sys.stderr)
        return 1
    with stores:
        try:
            asyncio.run(db.create_database(stores.database_url))
            applied = asyncio.run(db.migrate(stores.database_url))
        except TaskstreamError as exc:
            print(f"taskstream up: {exc}", file=sys.stderr)
            return 1
        print(f"migrations: {len(applied)} applied", flush=True)
        return _supervise(config, stores.redis_url, stores.database_url, args)


def _prometheus(state_dir: Path, targets: list[tuple[str, str]]) -> Child | None:
    """Start Prometheus (when installed) scraping every service, with the alert rules."""
    binary = shutil.which("prometheus")
    if binary is None or not _port_free(PROMETHEUS_PORT):
        return None
    home = (state_dir / "prometheus").resolve()
    home.mkdir(parents=True, exist_ok=True)
    by_job: dict[str, list[str]] = {}
    for job, addr in targets:
        by_job.setdefault(job, []).append(f"'{addr}'")
    jobs = "\n".join(
        f"  - job_name: taskstream-{job}\n    static_configs:\n"
        f"      - targets: [{', '.join(addrs)}]"
        for job, addrs in by_job.items()
    )
    rules = f"rule_files: ['{RULES}']\n" if RULES.exists() else ""
    config = home / "prometheus.yml"
    config.write_text(f"global:\n  scrape_interval: 5s\n{rules}scrape_configs:\n{jobs}\n")
    return Child(
        "prometheus",
        dict(os.environ),
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
            "--log.level=warn",
        ],
    )


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _supervise(
    config: config_mod.Config, redis_url: str, database_url: str, args: argparse.Namespace
) -> int:
    n = args.executors
    base = dict(os.environ, REDIS_URL=redis_url, DATABASE_URL=database_url)
    host = socket.gethostname()
    children: list[Child] = []
    targets: list[tuple[str, str]] = []
    port = args.metrics_port
    lines = [f"API         http://127.0.0.1:{config.ingest.http_port}  (metrics at /metrics)"]
    for service in available():
        names = [f"executor-{i}" for i in range(1, n + 1)] if service == "executor" else [service]
        for name in names:
            env = dict(base)
            if service != "ingest":
                env["METRICS_ADDR"] = f"127.0.0.1:{port}"
                lines.append(f"{name:<11} http://127.0.0.1:{port}/metrics")
                port += 1
            if service == "executor":
                env["CONSUMER_NAME"] = f"{host}-{name}"
            children.append(Child(name, env))
            addr = env.get("METRICS_ADDR", f"127.0.0.1:{config.ingest.http_port}")
            targets.append((service, addr))
    prometheus = None if args.no_prometheus else _prometheus(args.state_dir, targets)
    if prometheus is not None:
        children.append(prometheus)
        lines.append(f"prometheus  http://127.0.0.1:{PROMETHEUS_PORT}  (alert rules loaded)")
    print("taskstream is up:\n  " + "\n  ".join(lines) + "\nCtrl-C to stop.", flush=True)

    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    failed = ""
    while not stopping:
        for child in children:
            if child.proc.poll() is not None:
                failed = f"{child.name} exited with {child.proc.returncode}"
                stopping = True
        time.sleep(0.2)
    if failed:
        print(f"taskstream up: {failed}; stopping everything", file=sys.stderr)
    print("stopping: ingest, executors, then the movers", flush=True)
    for service in STOP_ORDER:
        group = [c for c in children if c.name.split("-")[0] == service]
        for child in group:
            child.terminate()
        for child in group:
            child.wait(STOP_TIMEOUT)
    return 1 if failed else 0
