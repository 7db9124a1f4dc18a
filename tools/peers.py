"""``python -m tools peers``: the combined enqueue-and-drain rate of the best-known Python queues
on this machine, for the benchmark to show taskstream's rate as a multiple of the best of them.

The peers are taskiq (with taskiq-redis's ``RedisStreamBroker``) and dramatiq (with its
``RedisBroker``), pinned below and installed once into their own virtual environment,
``tools/.peers-venv`` (taskstream is not in it; ``--venv`` puts it elsewhere). For each peer a
driver script from ``tools/peers_drivers/`` runs in that venv: it starts the peer's own worker
command (one process per core by default), waits until every worker process has run a job, warms
up with 200 jobs, then enqueues ``n`` no-op jobs as fast as the peer's client allows (taskiq:
``kiq()`` calls gathered 256 at a time; dramatiq: ``send()`` from 8 threads; neither has a batch
enqueue) and times from the first enqueue until all ``n`` have run. Each job INCRs one Redis
counter. The keys of a run share a fresh namespace (``peers-<peer>-<hex>``) and are deleted
afterwards; nothing is flushed, the Redis may be shared. The workers are stopped at the end,
also on an error or a timeout. A peer that fails yields a result with rate 0 and the reason in
``note``.

Knobs for the drivers, from the environment: ``PEERS_TASKIQ_MAX_ASYNC`` (32),
``PEERS_TASKIQ_PREFETCH`` (100), ``PEERS_TASKIQ_ENQUEUE`` (256), ``PEERS_DRAMATIQ_THREADS`` (8),
``PEERS_DRAMATIQ_ENQUEUE`` (8).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import msgspec

# Exact versions, checked to install and run together here (Python 3.11).
PINS = ("taskiq==0.13.0", "taskiq-redis==1.2.4", "dramatiq[redis]==2.2.1", "redis==8.1.0")
PEERS = ("taskiq", "dramatiq")
DRIVERS = Path(__file__).resolve().parent / "peers_drivers"
DEFAULT_VENV = Path(__file__).resolve().parent / ".peers-venv"
STAMP = ".peers-pins"  # in the venv: the pins it was built with
PIP_TIMEOUT_S = 900.0
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class PeerResult(msgspec.Struct, kw_only=True):
    name: str
    version: str
    jobs: int
    seconds: float  # first enqueue → last job finished
    rate: float  # jobs/s over ``seconds``; 0 when the peer failed
    note: str = ""  # the settings used, and the error when it failed
    enqueue_seconds: float = 0.0  # of ``seconds``, until the last enqueue returned


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(venv: Path = DEFAULT_VENV) -> Path:
    """The peers venv's python, creating ``venv`` with the pinned peers on first use (or when
    the pins changed). Raises RuntimeError naming what failed."""
    venv = venv.resolve()
    python = venv_python(venv)
    stamp = venv / STAMP
    wanted = "\n".join(PINS) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    base = shutil.which("python3") or sys.executable
    print(f"peers: installing {' '.join(PINS)} into {venv} (once)", flush=True)
    _run([base, "-m", "venv", "--clear", str(venv)], f"creating the venv {venv} with {base}")
    _run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *PINS],
        f"pip install {' '.join(PINS)} into {venv}",
    )
    stamp.write_text(wanted)
    return python


def _run(argv: list[str], what: str) -> None:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"peers: {what} failed: {exc}") from exc
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip()).splitlines()
        output = [line for line in lines if not line.startswith("WARNING:")][-15:] or lines[-15:]
        raise RuntimeError(f"peers: {what} failed (exit {done.returncode}):\n" + "\n".join(output))


def measure(
    python: Path, redis_url: str, n: int, *, processes: int = 2, timeout: float = 300
) -> list[PeerResult]:
    """One result per peer, measured one after the other; never raises for a failing peer."""
    return [_measure_one(peer, python, redis_url, n, processes, timeout) for peer in PEERS]


def _measure_one(
    peer: str, python: Path, redis_url: str, n: int, processes: int, timeout: float
) -> PeerResult:
    namespace = f"peers-{peer}-{uuid.uuid4().hex[:12]}"
    # The driver keeps its own deadline (and cleans up when it passes); ours is the backstop.
    inner = max(timeout - 30.0, timeout * 0.8)
    argv = [
        str(python), str(DRIVERS / f"drive_{peer}.py"),
        "--redis-url", redis_url, "-n", str(n), "--namespace", namespace,
        "--processes", str(processes), "--timeout", f"{inner:.0f}",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.pop("VIRTUAL_ENV", None)
    failed = PeerResult(name=peer, version="?", jobs=n, seconds=0.0, rate=0.0)
    try:
        # Its own process group holds the driver and the workers it starts, for the backstop.
        proc = subprocess.Popen(
            argv,
            cwd=DRIVERS,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    except OSError as exc:
        failed.note = f"could not start the driver {argv[1]}: {exc}"
        return failed
    late = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException as exc:  # timeout, Ctrl-C: stop the driver, which stops its workers
        out, err = _stop(proc)
        if not isinstance(exc, subprocess.TimeoutExpired):
            raise
        late = True
    _kill_group(proc.pid)  # anything the driver left behind
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            try:
                result = msgspec.convert(json.loads(line), PeerResult)
            except (ValueError, msgspec.ValidationError) as exc:
                failed.note = f"unreadable result {line[:200]!r}: {exc}"
                return failed
            if late:
                result.note += f" (stopped after {timeout:.0f}s)"
            return result
    if late:
        failed.note = f"no result within {timeout:.0f}s; stopped. {_tail(err)}"
    else:
        failed.note = f"driver exited {proc.returncode} without a result. {_tail(err)}"
    return failed


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGTERM the driver (it stops its workers and deletes its keys), then SIGKILL its group."""
    try:
        proc.send_signal(signal.SIGTERM)
        return proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    finally:
        _kill_group(proc.pid)
    try:
        return proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        return "", ""


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def best(results: Sequence[PeerResult]) -> PeerResult | None:
    """The fastest peer that produced a rate, or None."""
    ok = [r for r in results if r.rate > 0]
    return max(ok, key=lambda r: r.rate) if ok else None


def table(results: Sequence[PeerResult]) -> str:
    rows = [("peer", "version", "jobs", "seconds", "enqueue s", "jobs/s", "note")]
    for r in results:
        rows.append(
            (
                r.name,
                r.version,
                str(r.jobs),
                f"{r.seconds:.2f}",
                f"{r.enqueue_seconds:.2f}",
                f"{r.rate:,.0f}",
                r.note,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]])
        for row in rows
    ]
    top = best(results)
    lines.append(f"best: {top.name} at {top.rate:,.0f} jobs/s" if top else "best: none measured")
    return "\n".join(lines)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def peers_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools peers", description=__doc__)
    parser.add_argument("-n", type=int, default=20_000, help="no-op jobs per peer")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="the peers' venv")
    parser.add_argument(
        "--processes", type=int, default=os.cpu_count() or 2, help="worker processes per peer"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per peer")
    args = parser.parse_args(list(argv))
    if args.n < 1 or args.processes < 1 or args.timeout <= 0:
        parser.error("-n, --processes and --timeout must be positive")
    redis_url = os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)
    try:
        python = ensure_venv(args.venv)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    # SIGTERM as Ctrl-C, so a stopped run still stops the driver (which stops its workers).
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        results = measure(python, redis_url, args.n, processes=args.processes, timeout=args.timeout)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if args.json:
        print(msgspec.json.encode(results).decode())
    else:
        print(table(results))
    return 0 if best(results) else 1
