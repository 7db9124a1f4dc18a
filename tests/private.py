"""Stores of a test's own, started and stopped by the test (the shared ones are never touched)."""

from __future__ import annotations

import shutil
import tempfile
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
