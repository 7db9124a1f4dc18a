"""End-to-end fixtures: the services as processes, and a private Redis a test may restart."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.e2e.system import System, free_port
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


FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        item.stash[FAILED] = True
    return report


def _stop(system: System, request: pytest.FixtureRequest) -> None:
    """Stop the services; when the test failed, print the end of each one's log (pytest shows
    it under the failure), since a CI run leaves nothing else behind."""
    system.stop_all()
    if request.node.stash.get(FAILED, False):
        for name in system.procs:
            lines = system.log(name).splitlines()[-30:]
            print(f"----- {name}.log (last {len(lines)} lines)", *lines, sep="\n")


@pytest.fixture
def private_redis(database_url: str) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("needs a redis-server binary to run a private Redis")
    redis = PrivateRedis(database_url)
    redis.start()
    yield redis
    redis.cleanup()


@pytest.fixture
def system(
    tmp_path: Path, database_url: str, namespace: str, request: pytest.FixtureRequest
) -> Iterator[System]:
    from tests.conftest import REDIS_URL

    s = System(tmp_path, REDIS_URL, database_url, namespace)
    yield s
    _stop(s, request)


@pytest.fixture
def private_system(
    tmp_path: Path,
    database_url: str,
    namespace: str,
    private_redis: PrivateRedis,
    request: pytest.FixtureRequest,
) -> Iterator[tuple[System, PrivateRedis]]:
    s = System(tmp_path, private_redis.url, database_url, namespace)
    yield s, private_redis
    _stop(s, request)
