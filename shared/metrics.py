"""Every OpenTelemetry instrument, declared once with its unit and description.

Names follow the Go scheduler so its dashboards and alerts keep working (the Prometheus
exporter adds ``_total`` to counters). Labels are bounded: priority, task type, outcome —
never a task id. Services get a ``Metrics`` built on the global meter provider (Prometheus
exporter, set up in ``setup``); tests build one on an ``InMemoryMetricReader``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import metrics as otel
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

from taskstream.shared.domain import PRIORITIES

# Why a task goes to the dead letters (the label values of tasks_dead_lettered_total).
DEAD_REASONS = (
    "attempts_exhausted",
    "non_retryable",
    "unknown_type",
    "poison",
    "outcome_refused",
    "bad_result",
)
# What became of a schedule's tick (the label values of schedule_runs_total).
SCHEDULE_OUTCOMES = ("enqueued", "caught_up", "skipped", "missed", "triggered")
# How a workflow ended (the label values of workflows_finished_total).
WORKFLOW_OUTCOMES = ("succeeded", "failed", "cancelled")

# Why ingest refused a request (the label values of requests_rejected_total).
REJECT_REASONS = ("unauthorized", "forbidden", "rate_limited", "quota")

SECONDS_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)


class HotHistogram:
    """A histogram for the per-task hot path, aggregated in process and exported in
    Prometheus format beside the OpenTelemetry instruments (same registry, same ``/metrics``).

    OpenTelemetry's ``Histogram.record`` costs about 13 µs a call here (attribute checks and
    hashing, view matching); two of them per task took a quarter of an executor. Recording
    here is a bucket increment (under 1 µs). One label only, with bounded values.
    """

    def __init__(self, name: str, description: str, label: str) -> None:
        self.name = name
        self.description = description
        self.label = label
        self._bounds = list(SECONDS_BUCKETS)
        # label value → [count per bucket (the last: above every bound)..., sum]
        self._series: dict[str, list[float]] = {}

    def record(self, value: float, attributes: dict[str, str] | None = None) -> None:
        """The OpenTelemetry signature, so call sites read the same."""
        key = (attributes or {}).get(self.label, "")
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = [0.0] * (len(self._bounds) + 2)
        series[bisect.bisect_left(self._bounds, value)] += 1
        series[-1] += value

    def collect(self) -> Iterable[Any]:
        """prometheus_client's Collector protocol: one histogram family."""
        from prometheus_client.core import HistogramMetricFamily

        family = HistogramMetricFamily(self.name, self.description, labels=[self.label])
        for key, series in sorted(self._series.items()):
            cumulative, buckets = 0.0, []
            for bound, n in zip([*self._bounds, math.inf], series[:-1], strict=True):
                cumulative += n
                buckets.append(("+Inf" if bound == math.inf else str(bound), cumulative))
            family.add_metric([key], buckets, series[-1])
        yield family


class Metrics:
    """The instruments of one process."""

    def __init__(self, meter: Meter, registry: Any = None) -> None:
        self.enqueued = meter.create_counter(
            "tasks_enqueued", unit="1", description="Tasks accepted and committed by ingest."
        )
        self.published = meter.create_counter(
            "tasks_published", unit="1", description="Stream entries added, by priority."
        )
        self.publish_failures = meter.create_counter(
            "publish_failures",
            unit="1",
            description="Publishes that failed because Redis was unreachable (retried).",
        )
        self.dequeued = meter.create_counter(
            "tasks_dequeued", unit="1", description="Deliveries claimed by executors."
        )
        self.succeeded = meter.create_counter(
            "tasks_succeeded", unit="1", description="Attempts that succeeded."
        )
        self.failed = meter.create_counter(
            "tasks_failed", unit="1", description="Attempts that failed (error or timeout)."
        )
        self.retried = meter.create_counter(
            "tasks_retried", unit="1", description="Failed attempts scheduled to run again."
        )
        self.dead = meter.create_counter(
            "tasks_dead_lettered", unit="1", description="Tasks moved to the dead letters."
        )
        self.snoozed = meter.create_counter(
            "tasks_snoozed",
            unit="1",
            description="Attempts that snoozed (the handler raised Snooze): run again later, "
            "no attempt used.",
        )
        self.reaped = meter.create_counter(
            "tasks_reaped", unit="1", description="Entries reclaimed after the visibility timeout."
        )
        self.acks = meter.create_counter("acks", unit="1", description="Stream entries acked.")
        self.fenced = meter.create_counter(
            "fenced_results",
            unit="1",
            description="Deliveries or results dropped because their attempt was stale.",
        )
        self.bad_entries = meter.create_counter(
            "bad_entries", unit="1", description="Stream entries that did not decode."
        )
        self.run_seconds = HotHistogram("task_run_seconds", "Handler run time.", "type")
        self.wait_seconds = HotHistogram(
            "enqueue_to_start_seconds", "Time from queued to the handler starting.", "priority"
        )
        if registry is not None:
            registry.register(self.run_seconds)
            registry.register(self.wait_seconds)
        self.trimmed = meter.create_counter(
            "stream_trimmed", unit="1", description="Acknowledged entries trimmed from streams."
        )
        self.moved = meter.create_counter(
            "tasks_moved", unit="1", description="Due retries and delayed tasks put on streams."
        )
        self.repaired = meter.create_counter(
            "tasks_repaired", unit="1", description="Queued tasks re-published (entry lost)."
        )
        self.outbox_published = meter.create_counter(
            "tasks_outbox_published",
            unit="1",
            description="Tasks enqueued in applications' transactions, published by the watcher.",
        )
        self.lateness_seconds = meter.create_histogram(
            "watcher_lateness_seconds",
            unit="s",
            description="How late the watcher moved a due task.",
        )
        self.schedule_runs = meter.create_counter(
            "schedule_runs",
            unit="1",
            description="Schedule ticks by outcome: enqueued (on time), caught_up (late, within "
            "the catch-up window), skipped (overlap policy), missed (past the window), "
            "triggered (run by hand).",
        )
        self.workflows_started = meter.create_counter(
            "workflows_started",
            unit="1",
            description="Workflows submitted (a repeated idempotency key counts once).",
        )
        self.workflows_finished = meter.create_counter(
            "workflows_finished",
            unit="1",
            description="Workflows ended, by outcome: succeeded (every step did), failed (a "
            "step ended dead or cancelled), cancelled (by POST /v1/workflows/{id}/cancel); "
            "counted once, by the executor or the cancel that ended them (else by the janitor).",
        )
        self.schedule_lateness_seconds = meter.create_histogram(
            "schedule_lateness_seconds",
            unit="s",
            description="How long after its release (tick plus jitter) a schedule's tick fired.",
        )
        self.parked = meter.create_counter(
            "tasks_parked",
            unit="1",
            description="Deliveries of a paused task type set aside (queued, no attempt used).",
        )
        self.unparked = meter.create_counter(
            "tasks_unparked",
            unit="1",
            description="Parked tasks re-published after their type was resumed.",
        )
        # Queue gauges: sampled in one place (the janitor), never summed across executors.
        self.queue_depth = meter.create_gauge(
            "queue_depth", unit="1", description="Entries not yet delivered (group lag)."
        )
        self.stream_length = meter.create_gauge(
            "stream_length", unit="1", description="Entries in the stream (XLEN)."
        )
        self.pending_entries = meter.create_gauge(
            "pending_entries", unit="1", description="Delivered, not yet acknowledged entries."
        )
        self.consumers = meter.create_gauge(
            "consumers", unit="1", description="Consumers in the executors' group."
        )
        self.oldest_pending_age = meter.create_gauge(
            "oldest_pending_age_seconds",
            unit="s",
            description="Age of the oldest unacknowledged entry (since it was added).",
        )
        self.oldest_pending_idle = meter.create_gauge(
            "oldest_pending_idle_seconds",
            unit="s",
            description="Idle time of the oldest unacknowledged entry (since delivery or lease).",
        )
        self.oldest_undelivered_age = meter.create_gauge(
            "oldest_undelivered_age_seconds",
            unit="s",
            description="How long the first entry not yet delivered has waited.",
        )
        self.retry_set_depth = meter.create_gauge(
            "retry_set_depth", unit="1", description="Retries waiting in the due table."
        )
        self.delayed_depth = meter.create_gauge(
            "delayed_depth", unit="1", description="Delayed tasks waiting in the due table."
        )
        self.dlq_depth = meter.create_gauge(
            "dlq_depth", unit="1", description="Dead letters held in Postgres."
        )
        self.rejected = meter.create_counter(
            "requests_rejected",
            unit="1",
            description="Requests ingest refused, by reason: `unauthorized` (401), `forbidden` "
            "(403), `rate_limited` and `quota` (429).",
        )
        self.tenants = meter.create_gauge(
            "tenants",
            unit="1",
            description="Tenants: `known` (a working API key, or limits), `limited` (limits "
            "set), `capped` (a concurrency cap). Never a tenant id as a label.",
        )
        self.cap_waits = meter.create_counter(
            "concurrency_waits",
            unit="1",
            description="Deliveries set aside because their type's or tenant's concurrency cap "
            "was full (they wait, no attempt used).",
        )
        self.unwaited = meter.create_counter(
            "concurrency_unwaited",
            unit="1",
            description="Tasks that waited for a concurrency slot, re-published as one freed.",
        )
        self.fair_released = meter.create_counter(
            "fair_released",
            unit="1",
            description="Tasks held back for their tenant's fair share, published as its "
            "entries were read.",
        )
        self.rate_checks_skipped = meter.create_counter(
            "rate_checks_skipped",
            unit="1",
            description="Requests admitted without a rate check because Redis was unreachable "
            "(rate limiting fails open).",
        )
        self.queue_paused = meter.create_gauge(
            "queue_paused",
            unit="1",
            description="1 while a queue (a priority, or a task type) is paused, else 0.",
        )
        self.schedules = meter.create_gauge(
            "schedules", unit="1", description="Schedules by state: active, paused, ended."
        )
        # Read by a callback at collection time: no cost per task.
        self._inflight_sources: list[Callable[[], int]] = []
        self.inflight = meter.create_observable_gauge(
            "processing_inflight",
            callbacks=[self._observe_inflight],
            unit="1",
            description="Handlers running now.",
        )

    def zero(self, types: Iterable[str] = ()) -> None:
        """Create every counter series dashboards and alerts read, at 0, before its first
        event (Prometheus's advice: a series that appears only with its first event breaks
        ``rate()`` and absence alerts). ``types``: the task types this process handles."""
        for priority in PRIORITIES:
            p = {"priority": priority}
            for counter in (self.published, self.dequeued, self.retried, self.reaped,
                            self.bad_entries, self.trimmed, self.moved):  # fmt: skip
                counter.add(0, p)
            for reason in DEAD_REASONS:
                self.dead.add(0, {"priority": priority, "reason": reason})
            for task_type in types:
                labels = {"type": task_type, "priority": priority}
                self.succeeded.add(0, labels)
                self.failed.add(0, labels)
                self.snoozed.add(0, labels)
        for reason in REJECT_REASONS:
            self.rejected.add(0, {"reason": reason})
        for kind in ("type", "tenant"):
            self.cap_waits.add(0, {"kind": kind})
        for stage in ("claim", "complete", "reclaim"):
            self.fenced.add(0, {"stage": stage})
        for counter in (self.enqueued, self.publish_failures, self.acks, self.repaired,
                        self.outbox_published, self.parked, self.unparked,
                        self.rate_checks_skipped, self.unwaited,
                        self.fair_released):  # fmt: skip
            counter.add(0)
        for outcome in SCHEDULE_OUTCOMES:
            self.schedule_runs.add(0, {"outcome": outcome})
        self.workflows_started.add(0)
        for outcome in WORKFLOW_OUTCOMES:
            self.workflows_finished.add(0, {"outcome": outcome})

    def track_inflight(self, source: Callable[[], int]) -> None:
        """Count ``source()`` in ``processing_inflight`` (an executor registers itself)."""
        self._inflight_sources.append(source)

    def _observe_inflight(self, options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(sum(source() for source in self._inflight_sources))


def views() -> list[View]:
    return [
        View(
            instrument_type=Histogram,
            instrument_name="*_seconds",
            aggregation=ExplicitBucketHistogramAggregation(SECONDS_BUCKETS),
        )
    ]


def build(reader: MetricReader) -> Metrics:
    """Metrics on a private provider reading into ``reader`` (tests); the hot histograms go
    to the reader's Prometheus registry when it has one."""
    provider = MeterProvider(metric_readers=[reader], views=views())
    return Metrics(provider.get_meter("taskstream"), getattr(reader, "_registry", None))


def setup(service: str) -> Metrics:
    """Install the Prometheus exporter as the global provider; returns the instruments."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.resources import Resource

    provider = MeterProvider(
        metric_readers=[PrometheusMetricReader()],
        views=views(),
        resource=Resource.create({"service.name": f"taskstream-{service}"}),
    )
    otel.set_meter_provider(provider)
    from prometheus_client import REGISTRY

    return Metrics(provider.get_meter("taskstream"), REGISTRY)


def noop() -> Metrics:
    """Instruments that record nothing (library use without a provider)."""
    return Metrics(otel.NoOpMeterProvider().get_meter("taskstream"))


def prometheus_text() -> bytes:
    """The current metrics in Prometheus text format (for a ``/metrics`` route)."""
    from prometheus_client import REGISTRY, generate_latest

    return generate_latest(REGISTRY)


# The labels each instrument is recorded with (bounded: never a task id). The README's table
# is generated from these and the instruments' own descriptions.
LABELS: dict[str, str] = {
    "tasks_enqueued": "",
    "tasks_published": "priority",
    "publish_failures": "",
    "tasks_dequeued": "priority",
    "tasks_succeeded": "type, priority",
    "tasks_failed": "type, priority",
    "tasks_retried": "priority",
    "tasks_dead_lettered": "priority, reason",
    "tasks_snoozed": "type, priority",
    "tasks_reaped": "priority",
    "acks": "",
    "fenced_results": "stage (claim, complete, reclaim)",
    "bad_entries": "priority",
    "task_run_seconds": "type",
    "enqueue_to_start_seconds": "priority",
    "stream_trimmed": "priority",
    "tasks_moved": "priority",
    "tasks_repaired": "",
    "tasks_outbox_published": "",
    "watcher_lateness_seconds": "",
    "queue_depth": "priority",
    "stream_length": "priority",
    "pending_entries": "priority",
    "consumers": "priority",
    "oldest_pending_age_seconds": "priority",
    "oldest_pending_idle_seconds": "priority",
    "oldest_undelivered_age_seconds": "priority",
    "retry_set_depth": "priority",
    "delayed_depth": "priority",
    "dlq_depth": "priority",
    "schedule_runs": "outcome",
    "schedule_lateness_seconds": "",
    "workflows_started": "",
    "workflows_finished": "outcome (succeeded, failed, cancelled)",
    "tasks_parked": "type",
    "tasks_unparked": "",
    "queue_paused": "kind (priority, type), queue",
    "schedules": "state",
    "processing_inflight": "",
    "requests_rejected": "reason (unauthorized, forbidden, rate_limited, quota)",
    "rate_checks_skipped": "",
    "concurrency_waits": "kind (type, tenant)",
    "tenants": "which (known, limited, capped)",
    "concurrency_unwaited": "",
    "fair_released": "",
}


KINDS = {
    "Counter": "counter",
    "Histogram": "histogram",
    "HotHistogram": "histogram",
    "Gauge": "gauge",
    "UpDownCounter": "gauge",
    "ObservableGauge": "gauge",
}


def markdown_table() -> str:
    """The README's metrics table: Prometheus name, kind, labels, meaning."""
    instruments = Metrics(MeterProvider().get_meter("taskstream"))
    lines = ["| metric | kind | labels | meaning |", "| --- | --- | --- | --- |"]
    for instrument in vars(instruments).values():
        if not hasattr(instrument, "name"):
            continue
        name = instrument.name
        kind = KINDS[type(instrument).__name__.lstrip("_")]
        shown = f"{name}_total" if kind == "counter" else name
        labels = LABELS[name] or "—"
        lines.append(f"| `{shown}` | {kind} | {labels} | {instrument.description} |")
    return "\n".join(lines)
