"""End-to-end fixtures: the services as processes, and a private Redis a test may restart."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.e2e.system import System
from tests.private import PrivateRedis

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
