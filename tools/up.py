"""``python -m tools up`` (``make run``): the whole system on one machine, until Ctrl-C.

Finds or starts Redis and Postgres (``tools.stores``), creates and migrates the database, then
runs every service as its own process: ingest, N executors (stable consumer names, so a
restart takes back its own pending entries), the watcher and the janitor, and Prometheus (with
the alert rules) when it is installed. It supervises them (``tools/supervisor.py``): a service
that exits is restarted under its own name after a backoff of 0.5 s doubling to 30 s (reset
after a minute of health); one that fails within 5 s of starting five times in a row stops the
run with its name and last lines. Ctrl-C, SIGTERM or SIGHUP stops them in order (ingest, the
executors, then the movers), then the stores it started; a second signal forces. If this
process is killed, its services get SIGTERM from the kernel. One run per state directory: a
second says so and exits 1. Kubernetes (Deployments, CrashLoopBackOff) and Compose
(``restart: unless-stopped``, a one-shot migration) do the same for ``deploy/`` and
``compose.yaml``.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import importlib.util
import os
import shutil
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from taskstream.shared import config as config_mod
from taskstream.shared import db
from taskstream.shared.errors import TaskstreamError
from tools.stores import StoreError, ensure
from tools.supervisor import BACKOFF_S, Child, Supervisor

ORDER = ("ingest", "executor", "watcher", "janitor")
STOP_ORDER = (*ORDER, "prometheus")
PROMETHEUS_PORT = 9090
RULES = Path(__file__).resolve().parents[1] / "deploy" / "prometheus" / "alerts.yml"
METRICS_BASE_PORT = 9101


def available() -> list[str]:
    return [s for s in ORDER if importlib.util.find_spec(f"taskstream.services.{s}") is not None]


def up_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools up",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--executors", type=int, default=2, help="executor processes")
    parser.add_argument("--state-dir", type=Path, default=Path(".local"))
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=METRICS_BASE_PORT,
        help="the first of the services' metrics ports (one each, upwards)",
    )
    parser.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus")
    parser.add_argument(
        "--backoff",
        type=float,
        default=BACKOFF_S,
        help="seconds before a crashed service's first restart (doubling, up to 30)",
    )
    args = parser.parse_args(list(argv))
    if args.executors < 1:
        parser.error("--executors must be at least 1")
    args.state_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock(args.state_dir)
    if lock is None:
        return 1
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
    # A local run listens on loopback only, where auth may stay off (AUTH_MODE): ingest
    # refuses auth off on an address others can reach.
    base.setdefault("HTTP_HOST", "127.0.0.1")
    host = socket.gethostname()
    children: list[Child] = []
    targets: list[tuple[str, str]] = []
    port = args.metrics_port
    lines = [f"API         http://127.0.0.1:{config.ingest.http_port}  (metrics at /metrics)"]
    if not config_mod.auth_kinds(config.access):
        lines.append(
            "warning     auth is off (AUTH_MODE=off): anyone on this machine acts as the "
            "default tenant with every scope"
        )
    supervisor = Supervisor(children, STOP_ORDER, backoff_s=args.backoff)
    supervisor.install_signals()  # before the first child: a Ctrl-C from now on stops in order
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
            children.append(Child(name, env, out=sys.stdout))
            addr = env.get("METRICS_ADDR", f"127.0.0.1:{config.ingest.http_port}")
            targets.append((service, addr))
    prometheus = None if args.no_prometheus else _prometheus(args.state_dir, targets)
    if prometheus is not None:
        children.append(prometheus)
        lines.append(f"prometheus  http://127.0.0.1:{PROMETHEUS_PORT}  (alert rules loaded)")
    pids = ", ".join(f"{c.name} {c.proc.pid}" for c in children)
    print(
        "taskstream is up:\n  " + "\n  ".join(lines) + f"\n(pids: {pids})\n"
        "Services that exit are restarted. Ctrl-C to stop.",
        flush=True,
    )
    return supervisor.run()


def _lock(state_dir: Path) -> IO[str] | None:
    """Hold ``state_dir/up.lock`` for the life of this process (the kernel lets it go when
    the process ends, however it ends); None, with one line said, if another run holds it."""
    path = state_dir / "up.lock"
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or "?"
        print(
            f"taskstream up: already running from {state_dir.resolve()} (pid {pid}); stop it "
            "first (Ctrl-C in its terminal)",
            file=sys.stderr,
        )
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
