# mypy: ignore-errors
"""What the peer drivers share. Runs inside the peers venv (redis-py is there, taskstream is not).

A driver: starts the peer's worker command in this process group, waits until every worker
process has run a job, warms up, then enqueues ``n`` no-op jobs and times from the first
enqueue until the jobs' shared Redis counter (one INCR each) reaches ``n``. Afterwards it
stops the workers (SIGTERM, then SIGKILL for whatever outlived the grace period) and deletes
every key holding its namespace, also on error, timeout or SIGTERM. It prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
POLL_S = 0.002  # how often the counter is read while jobs drain
WARMUP_JOBS = 200
STOP_GRACE_S = 5.0


class DriverError(RuntimeError):
    pass


_T0 = time.monotonic()


def log(message: str) -> None:
    """A progress line on stderr; never fails (the reader may be gone)."""
    with contextlib.suppress(OSError, ValueError):
        print(f"[driver +{time.monotonic() - _T0:.2f}s] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="peer benchmark driver")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("-n", type=int, required=True)
    parser.add_argument("--namespace", required=True, help="unique prefix of every key used")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds for the whole run")
    args = parser.parse_args(argv)
    if args.n < 1 or args.processes < 1:
        parser.error("-n and --processes must be at least 1")
    return args


def counter_key(namespace: str) -> str:
    return f"{namespace}:done"


def pids_key(namespace: str) -> str:
    return f"{namespace}:pids"


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class Workers:
    """The peer's worker command, with its output in a temporary log file."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        fd, name = tempfile.mkstemp(prefix="peers-worker-", suffix=".log")
        self.log = Path(name)
        try:
            self.proc = subprocess.Popen(
                argv,
                cwd=HERE,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=subprocess.STDOUT,
            )
        except BaseException:
            self.log.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)

    def check(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise DriverError(f"worker command exited with {code}: {self.tail()}")

    def tail(self, lines: int = 8) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the worker command, then SIGKILL it and every descendant still alive."""
        family = {self.proc.pid: _started(self.proc.pid), **descendants(self.proc.pid)}
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                family.update(descendants(self.proc.pid))
        for pid, started in family.items():
            if started is not None and _started(pid) == started:  # still that process
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self.log.unlink(missing_ok=True)


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first); None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()


def _started(pid: int) -> str | None:
    """When a live (not zombie) process started, in clock ticks since boot."""
    fields = _stat(pid)
    return fields[19] if fields and fields[0] != "Z" else None


def descendants(pid: int) -> dict[int, str]:
    """Every live descendant of ``pid`` with its start time, from /proc (Linux)."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(entry.name)
        if fields is None or fields[0] == "Z":
            continue
        children.setdefault(int(fields[1]), []).append((int(entry.name), fields[19]))
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child, started in children.get(todo.pop(), []):
            found[child] = started
            todo.append(child)
    return found


def worker_env(args: argparse.Namespace) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(
        PYTHONPATH=str(HERE),
        PYTHONUNBUFFERED="1",
        PEERS_REDIS_URL=args.redis_url,
        PEERS_NAMESPACE=args.namespace,
    )
    return env


def check_deadline(deadline: float, what: str = "enqueueing") -> None:
    if time.monotonic() >= deadline:
        raise DriverError(f"timed out {what}")


def wait_until(
    what: str, done: Callable[[], bool], deadline: float, workers: Workers, poll: float = POLL_S
) -> None:
    while not done():
        workers.check()
        if time.monotonic() >= deadline:
            raise DriverError(f"timed out waiting for {what}; workers said: {workers.tail()}")
        time.sleep(poll)


def wait_for_workers(
    r: redis.Redis,
    args: argparse.Namespace,
    workers: Workers,
    send_hello: Callable[[], None],
    deadline: float,
) -> None:
    """Send ``hello`` jobs (each adds its process id to a set, then sleeps a little) one at a
    time until every worker process has answered one."""
    key = pids_key(args.namespace)
    ready_by = min(deadline, time.monotonic() + 90)
    while r.scard(key) < args.processes:
        workers.check()
        if time.monotonic() >= ready_by:
            raise DriverError(
                f"only {r.scard(key)} of {args.processes} worker processes answered in time; "
                f"workers said: {workers.tail()}"
            )
        send_hello()
        time.sleep(0.05)


def cleanup(r: redis.Redis, namespace: str) -> int:
    """Delete every key whose name holds the namespace (unique per run). Never FLUSH*."""
    deleted = 0
    batch: list[bytes] = []
    for key in r.scan_iter(match=f"*{namespace}*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            deleted += r.delete(*batch)
            batch.clear()
    if batch:
        deleted += r.delete(*batch)
    return deleted


def run(
    name: str,
    version: str,
    settings: str,
    worker_argv: list[str],
    send_hello: Callable[[], None],
    enqueue: Callable[[int, float], None],
    args: argparse.Namespace,
    setup: Callable[[], None] | None = None,
    teardown: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """The common sequence; ``enqueue(k, deadline)`` sends k no-op jobs as fast as the peer
    allows, raising DriverError once ``time.monotonic()`` passes ``deadline``."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    deadline = time.monotonic() + args.timeout
    result: dict[str, Any] = {
        "name": name,
        "version": version,
        "jobs": args.n,
        "seconds": 0.0,
        "enqueue_seconds": 0.0,
        "rate": 0.0,
        "note": settings,
    }
    r = redis.Redis.from_url(args.redis_url)
    workers: Workers | None = None
    try:
        r.ping()
        cleanup(r, args.namespace)
        if setup is not None:
            setup()
        workers = Workers(worker_argv, worker_env(args))
        log(f"started {' '.join(worker_argv[1:])}")
        wait_for_workers(r, args, workers, send_hello, deadline)
        log("every worker process answered; warming up")
        key = counter_key(args.namespace)
        enqueue(WARMUP_JOBS, deadline)
        wait_until(
            "the warm-up jobs", lambda: int(r.get(key) or 0) >= WARMUP_JOBS, deadline, workers
        )
        base = int(r.get(key) or 0)
        target = base + args.n
        log(f"timing {args.n} jobs")
        start = time.perf_counter()
        enqueue(args.n, deadline)
        enqueued = time.perf_counter()
        log(f"enqueued in {enqueued - start:.3f}s")
        wait_until(
            f"{args.n} jobs to finish", lambda: int(r.get(key) or 0) >= target, deadline, workers
        )
        seconds = time.perf_counter() - start
        result.update(
            seconds=round(seconds, 4),
            enqueue_seconds=round(enqueued - start, 4),
            rate=round(args.n / seconds, 1),
        )
    except BaseException as exc:  # reported as the result, after the cleanup below
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        result.update(rate=0.0, note=f"{settings}; failed: {detail}")
        if not isinstance(exc, (DriverError, KeyboardInterrupt)):
            log(traceback.format_exc())
    finally:
        # Let the cleanup finish: further SIGTERMs (and SIGINTs) are ignored from here on.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if workers is not None:
            log("stopping the workers")
            try:
                workers.stop()
            except BaseException as exc:
                log(f"stopping the workers failed: {exc!r}")
            log("workers stopped")
        if teardown is not None:
            try:
                teardown()
            except BaseException as exc:
                log(f"{name}: teardown failed: {exc!r}")
        try:
            cleanup(r, args.namespace)
        except BaseException as exc:
            log(f"{name}: could not delete the keys of {args.namespace}: {exc!r}")
        with contextlib.suppress(BaseException):
            r.close()
    with contextlib.suppress(OSError, ValueError):
        print(json.dumps(result), flush=True)
    return result
