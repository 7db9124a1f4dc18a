"""One trace per task: the caller's traceparent → ingest → watcher → executor."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider

from taskstream.services.executor.executor import Executor
from taskstream.services.watcher.watcher import Watcher
from taskstream.shared import config as config_mod
from taskstream.shared import tracing
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.handlers import registry
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.helpers import api_client

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    yield exporter
    tracing.use(NoOpTracerProvider())


def by_name(spans: Any, name: str) -> list[Any]:
    return [s for s in spans.get_finished_spans() if s.name == name]


async def test_one_trace_spans_ingest_watcher_and_executor(
    spans: InMemorySpanExporter,
    config: Config,
    db: Database,
    streams: Streams,
    metrics: Metrics,
) -> None:
    config = config_mod.replace(config, retry_base_ms=0)
    async with api_client(config, db, streams, metrics) as (client, _):
        r = await client.post(
            "/v1/tasks",
            json={"type": "flaky", "payload": {"fail_first_n": 1}},
            headers={"traceparent": TRACEPARENT},
        )
        assert r.status == 201
        task_id = (await r.json())["id"]
    executor = Executor(config, db, streams, registry, metrics, consumer="c")
    await executor.run_once()  # attempt 1 fails
    await Watcher(config, db, streams, metrics).run_once()  # the retry is released
    await executor.run_once()  # attempt 2 succeeds

    [enqueue] = by_name(spans, "task.enqueue")
    [release] = by_name(spans, "task.release")
    runs = sorted(by_name(spans, "task.run"), key=lambda s: s.attributes["taskstream.task.attempt"])
    assert len(runs) == 2
    every = [enqueue, release, *runs]
    assert {format(s.context.trace_id, "032x") for s in every} == {CALLER_TRACE}
    assert enqueue.attributes["taskstream.task.id"] == task_id
    assert runs[0].parent.span_id == enqueue.context.span_id
    assert release.parent.span_id == enqueue.context.span_id
    assert runs[1].parent.span_id == release.context.span_id
    assert [r.attributes["taskstream.task.attempt"] for r in runs] == [1, 2]
    assert [r.attributes["taskstream.outcome"] for r in runs] == ["retry", "succeeded"]
    assert all(r.attributes["taskstream.task.id"] == task_id for r in runs)


def test_exporting_is_off_unless_the_standard_variable_asks() -> None:
    tracing.setup("test", {})
    assert isinstance(tracing._provider, NoOpTracerProvider)
    tracing.setup("test", {"OTEL_TRACES_EXPORTER": "console"})
    try:
        assert isinstance(tracing._provider, TracerProvider)
    finally:
        tracing.shutdown()
        tracing.use(NoOpTracerProvider())
