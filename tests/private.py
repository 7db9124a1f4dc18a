"""Stores of a test's own, started and stopped by the test (the shared ones are never touched)."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.system import free_port
from tools.stores import Stores, ensure


class PrivateRedis:
    """A redis-server of this test's own (no persistence), so it can be restarted empty
    without touching the shared one."""

    def __init__(self, database_url: str) -> None:
        self.url = f"redis://127.0.0.1:{free_port()}/0"
        self._database_url = database_url
        self._dir = Path(tempfile.mkdtemp(prefix="ts-redis-"))
        self._stores: Stores | None = None

    def start(self) -> None:
        self._stores = ensure(self.url, self._database_url, self._dir, log=lambda _: None)
        assert self._stores.started, "the private Redis port was already taken"

    def stop(self) -> None:
        if self._stores is not None:
            self._stores.stop()
            self._stores = None

    def restart_empty(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


@pytest.fixture
def private_redis(database_url: str) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("needs a redis-server binary to run a private Redis")
    redis = PrivateRedis(database_url)
    redis.start()
    yield redis
    redis.cleanup()


class PrivatePostgres:
    """A Postgres cluster of this test's own (as an unprivileged user when root), so it can be
    crashed (immediate stop: SIGQUIT to the postmaster, no checkpoint) and restarted, which
    then runs crash recovery on its data."""

    def __init__(self) -> None:
        self.url = f"postgresql://postgres@127.0.0.1:{free_port()}/taskstream_chaos"
        self._dir = Path(tempfile.mkdtemp(prefix="ts-pg-"))
        self._dir.chmod(0o755)
        self._stores: Stores | None = None

    def start(self) -> None:
        redis = f"redis://127.0.0.1:{free_port()}/0"  # not started: it answers nothing
        self._stores = _ensure_postgres(redis, self.url, self._dir)

    def crash(self) -> None:
        """Stop it at once, as a power cut would (the postmaster's immediate shutdown)."""
        [pid_file] = list(self._dir.glob("pg/data-*/postmaster.pid"))
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + 30
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stores = None

    def restart(self) -> None:
        self.start()

    def cleanup(self) -> None:
        if self._stores is not None:
            self._stores.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def _ensure_postgres(redis_url: str, database_url: str, state_dir: Path) -> Stores:
    from tools.stores import KINDS, _ensure_one

    stores = Stores(redis_url, database_url)
    _ensure_one(KINDS["postgres"], database_url, state_dir / "pg", stores, lambda _: None)
    return stores


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    if shutil.which("initdb") is None and not list(Path("/usr/lib/postgresql").glob("*/bin")):
        pytest.skip("needs Postgres binaries to run a private cluster")
    pg = PrivatePostgres()
    pg.start()
    yield pg
    pg.cleanup()
