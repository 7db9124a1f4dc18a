"""The hot-path histograms export exactly what a Prometheus histogram would."""

from __future__ import annotations

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from taskstream.shared import metrics


def samples(
    registry: CollectorRegistry, name: str, type_: str = "noop"
) -> dict[tuple[str, str], float]:
    text = generate_latest(registry).decode()
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith(name) and s.labels.get("type") == type_:
                out[(s.name, s.labels.get("le", ""))] = s.value
    return out


def test_hot_histogram_counts_cumulative_buckets_sum_and_count() -> None:
    registry = CollectorRegistry()
    m = metrics.build(PrometheusMetricReader(registry=registry))
    for value in (0.0004, 0.005, 0.005, 0.2, 400.0):  # 0.005 is a bound: it counts as <=
        m.run_seconds.record(value, {"type": "noop"})
    m.run_seconds.record(1.0, {"type": "other"})

    got = samples(registry, "task_run_seconds")
    assert got[("task_run_seconds_bucket", "0.0005")] == 1
    assert got[("task_run_seconds_bucket", "0.005")] == 3
    assert got[("task_run_seconds_bucket", "0.25")] == 4
    assert got[("task_run_seconds_bucket", "300.0")] == 4
    assert got[("task_run_seconds_bucket", "+Inf")] == 5
    assert got[("task_run_seconds_count", "")] == 5
    assert abs(got[("task_run_seconds_sum", "")] - 400.2104) < 1e-9
    assert samples(registry, "task_run_seconds", "other")[("task_run_seconds_count", "")] == 1


def test_counters_dashboards_read_exist_at_zero_before_their_first_event() -> None:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from taskstream.shared import metrics as metrics_mod
    from tests.conftest import counter_value

    reader = InMemoryMetricReader()
    instruments = metrics_mod.build(reader)
    instruments.zero(["email.send"])
    data = reader.get_metrics_data()
    assert data is not None
    names = {
        (m.name, tuple(sorted(dict(p.attributes or {}).items())))
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        for p in m.data.data_points
    }
    for name, labels in [
        ("tasks_reaped", {"priority": "low"}),
        ("tasks_retried", {"priority": "critical"}),
        ("tasks_failed", {"type": "email.send", "priority": "default"}),
        ("tasks_dead_lettered", {"priority": "high", "reason": "poison"}),
    ]:
        assert (name, tuple(sorted(labels.items()))) in names, name
        assert counter_value(reader, name, **labels) == 0
