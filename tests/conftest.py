"""Fixtures: real Redis and Postgres, isolated per test without flushing anything.

Each test gets a uuid key namespace on the shared Redis (deleted afterwards) and its own
database cloned from a template migrated once per session (dropped afterwards).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from taskstream.shared import config as config_mod
from taskstream.shared import db as db_mod
from taskstream.shared import metrics as metrics_mod
from taskstream.shared.db import Database
from taskstream.shared.keys import Keys
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams

pytest_plugins = ["tests.private"]

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
SERVER_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/taskstream")


@pytest.fixture(scope="session")
def template_db() -> Iterator[str]:
    name = f"ts_template_{uuid.uuid4().hex[:8]}"
    url = db_mod.with_database(SERVER_URL, name)

    async def make() -> None:
        await db_mod.create_database(url)
        await db_mod.migrate(url)

    asyncio.run(make())
    yield name
    asyncio.run(db_mod.drop_database(url))


@pytest.fixture
async def database_url(template_db: str) -> AsyncIterator[str]:
    url = db_mod.with_database(SERVER_URL, f"ts_test_{uuid.uuid4().hex[:12]}")
    await db_mod.create_database(url, template=template_db)
    yield url
    await db_mod.drop_database(url)


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def config(database_url: str, namespace: str) -> config_mod.Config:
    return config_mod.load(
        {},
        redis_url=REDIS_URL,
        database_url=database_url,
        namespace=namespace,
        worker_pool=8,
        prefetch=8,
        retry_base_ms=10,
        retry_max_ms=50,
        retry_jitter_ms=0,
        complete_linger_ms=1,
        read_block_ms=50,
        shutdown_grace_ms=2000,
    )


@pytest.fixture
async def db(config: config_mod.Config) -> AsyncIterator[Database]:
    database = await Database.connect(config.stores.database_url, min_size=1, max_size=5)
    yield database
    await database.close()


@pytest.fixture
async def streams(config: config_mod.Config) -> AsyncIterator[Streams]:
    s = Streams.connect(config.stores.redis_url, Keys(config.stores.namespace))
    yield s
    await s.delete_namespace()
    await s.close()


@pytest.fixture
def metric_reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def metrics(metric_reader: InMemoryMetricReader) -> Metrics:
    return metrics_mod.build(metric_reader)


def counter_value(reader: InMemoryMetricReader, name: str, **labels: str) -> float:
    """Sum of a metric's data points whose attributes include ``labels``."""
    data = reader.get_metrics_data()
    total = 0.0
    if data is None:
        return total
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name != name:
                    continue
                for point in metric.data.data_points:
                    attrs = dict(point.attributes or {})
                    if all(attrs.get(k) == v for k, v in labels.items()):
                        total += getattr(point, "value", getattr(point, "count", 0))
    return total
