"""The load generator's report: figures computed from the task rows, and the Go scheduler's table.

Every duration comes from the database clock (``created_at``, ``queued_at``, ``started_at``,
``finished_at``), so how often the load generator polls does not change the figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

from taskstream.shared.domain import TERMINAL, TaskTiming


class SubmitStats(msgspec.Struct, kw_only=True):
    """What the submit phase did, measured by the client."""

    requested: int
    accepted: int
    rejected: int = 0
    seconds: float = 0.0
    latencies: list[float] = msgspec.field(default_factory=list)  # per request, seconds
    errors: list[str] = msgspec.field(default_factory=list)  # the first few, verbatim


class Report(msgspec.Struct, kw_only=True):
    """One load run, as printed (table) or emitted (``--json``)."""

    burst: str  # "10,000" for a burst, "1,000/s * 30 s" for an open loop
    route: str
    requested: int
    accepted: int
    rejected: int
    succeeded: int
    dead: int
    cancelled: int
    unfinished: int  # not terminal when the wait ended
    executors: int | None  # distinct consumers that ran a final attempt (None: unknown)
    concurrency: int | None  # handlers per executor (WORKER_POOL), when known
    peak_inflight: int  # most tasks claimed and not yet recorded at one time (final attempts)
    submit_s: float
    submit_rate: float
    drain_s: float  # first task accepted → last task finished
    process_s: float  # first task started → last task finished
    throughput: float  # terminal tasks / drain_s
    fail_pct: float  # dead / accepted
    retries: int
    reaped: int | None
    run_p95_ms: float | None  # final attempt, claimed → outcome committed
    wait_p50_ms: float | None  # enqueue → start of the first attempt
    wait_p95_ms: float | None
    wait_p99_ms: float | None
    wait_max_ms: float | None
    accept_p50_ms: float | None  # HTTP request latency (open loop: from the planned send time)
    accept_p99_ms: float | None
    by_type: dict[str, dict[str, int]]  # type → status → tasks
    errors: list[str]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile (0 < q ≤ 100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[min(len(ordered), max(1, rank)) - 1]


def peak_overlap(intervals: Sequence[tuple[float, float]]) -> int:
    """The most intervals ``(start, end)`` open at one instant (an end at t closes before a
    start at t opens)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def build_report(
    *,
    burst: str,
    route: str,
    submit: SubmitStats,
    timings: Sequence[TaskTiming],
    concurrency: int | None = None,
) -> Report:
    by_type: dict[str, dict[str, int]] = {}
    for t in timings:
        counts = by_type.setdefault(t.type, {})
        counts[t.status] = counts.get(t.status, 0) + 1
    status = {s: sum(c.get(s, 0) for c in by_type.values()) for s in TERMINAL}
    done = [t for t in timings if t.status in TERMINAL]
    finished = [t.finished_at.timestamp() for t in done if t.finished_at is not None]
    created = [t.created_at.timestamp() for t in timings]
    first_started = [t.first_started_at.timestamp() for t in timings if t.first_started_at]
    drain = max(finished) - min(created) if finished and created else 0.0
    process = max(finished) - min(first_started) if finished and first_started else 0.0
    runs = [
        (t.started_at.timestamp(), t.finished_at.timestamp())
        for t in done
        if t.started_at is not None and t.finished_at is not None
    ]
    waits = [
        (t.first_started_at - t.queued_at).total_seconds() * 1000
        for t in timings
        if t.first_started_at is not None and t.queued_at is not None
    ]
    consumers = {t.consumer for t in timings if t.consumer is not None}
    reaped = [t.reaped for t in timings]
    accepted = submit.accepted
    return Report(
        burst=burst,
        route=route,
        requested=submit.requested,
        accepted=accepted,
        rejected=submit.rejected,
        succeeded=status["succeeded"],
        dead=status["dead"],
        cancelled=status["cancelled"],
        unfinished=accepted - len(done),
        executors=len(consumers) or None,
        concurrency=concurrency,
        peak_inflight=peak_overlap(runs),
        submit_s=submit.seconds,
        submit_rate=accepted / submit.seconds if submit.seconds > 0 else 0.0,
        drain_s=drain,
        process_s=process,
        throughput=len(done) / drain if drain > 0 else 0.0,
        fail_pct=100 * status["dead"] / accepted if accepted else 0.0,
        retries=sum(t.attempts - 1 for t in timings),
        reaped=None if any(r is None for r in reaped) else sum(r or 0 for r in reaped),
        run_p95_ms=percentile([(e - s) * 1000 for s, e in runs], 95),
        wait_p50_ms=percentile(waits, 50),
        wait_p95_ms=percentile(waits, 95),
        wait_p99_ms=percentile(waits, 99),
        wait_max_ms=max(waits) if waits else None,
        accept_p50_ms=_ms(percentile(submit.latencies, 50)),
        accept_p99_ms=_ms(percentile(submit.latencies, 99)),
        by_type=by_type,
        errors=submit.errors,
    )


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def fmt_ms(ms: float | None) -> str:
    """A duration given in milliseconds, with sensible precision ("1.24 ms", "3.10 s")."""
    if ms is None:
        return "n/a"
    if ms >= 10_000:
        return f"{ms / 1000:.1f} s"
    if ms >= 1000:
        return f"{ms / 1000:.2f} s"
    if ms >= 100:
        return f"{ms:.0f} ms"
    if ms >= 10:
        return f"{ms:.1f} ms"
    return f"{ms:.2f} ms"


def fmt_int(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


COLUMNS = (
    "burst",
    "workers \u00d7 concurrency",
    "in-flight",
    "drain time",
    "throughput",
    "p95 run",
    "p95 wait",
    "fail %",
    "retries",
    "reaped",
)


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    """A Markdown table, padded so it also reads well in a terminal."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = (
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "| " + " | ".join(padded) + " |"

    rule = (
        "| "
        + " | ".join(("-" * (w - 1) + ":") if i in right else "-" * w for i, w in enumerate(widths))
        + " |"
    )
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def render(report: Report) -> str:
    """The Go scheduler's table, one row, then the latency and outcome lines."""
    workers = f"{fmt_int(report.executors)} \u00d7 {fmt_int(report.concurrency)}"
    row = [
        report.burst,
        workers,
        fmt_int(report.peak_inflight),
        fmt_ms(report.drain_s * 1000),
        f"{report.throughput:,.0f}/s",
        fmt_ms(report.run_p95_ms),
        fmt_ms(report.wait_p95_ms),
        f"{report.fail_pct:.1f} %",
        fmt_int(report.retries),
        fmt_int(report.reaped),
    ]
    lines = [
        markdown(COLUMNS, [row], right=set(range(2, len(COLUMNS)))),
        "",
        f"enqueue → start: p50 {fmt_ms(report.wait_p50_ms)} · p95 {fmt_ms(report.wait_p95_ms)}"
        f" · p99 {fmt_ms(report.wait_p99_ms)} · max {fmt_ms(report.wait_max_ms)}",
        f"submitted {fmt_int(report.accepted)} of {fmt_int(report.requested)} via {report.route}"
        f" in {fmt_ms(report.submit_s * 1000)} ({report.submit_rate:,.0f}/s; request"
        f" p50 {fmt_ms(report.accept_p50_ms)}, p99 {fmt_ms(report.accept_p99_ms)})",
        f"succeeded {fmt_int(report.succeeded)} · dead {fmt_int(report.dead)}"
        f" · cancelled {fmt_int(report.cancelled)} · unfinished {fmt_int(report.unfinished)}"
        f" · rejected {fmt_int(report.rejected)}",
    ]
    lines += [f"error: {e}" for e in report.errors]
    return "\n".join(lines)
