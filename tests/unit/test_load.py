"""The load generator's pieces: flags (the Go scheduler's defaults), the mix, the figures, the
table, the progress line, and the benchmark's backoff allowance. No timing assertions."""

from __future__ import annotations

import collections
import datetime as dt
import io
import random
import uuid

import pytest

from taskstream.services.cli import load
from taskstream.services.cli.load import LoadOptions, make_plan, parse_args, task_body
from taskstream.services.cli.load_report import (
    COLUMNS,
    SubmitStats,
    build_report,
    fmt_ms,
    peak_overlap,
    percentile,
    render,
)
from taskstream.services.cli.load_track import Progress
from taskstream.shared import config as config_mod
from taskstream.shared.domain import TaskTiming
from tools.bench import backoff_allowance_s

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_defaults_are_the_go_schedulers() -> None:
    opts = parse_args([])
    assert (opts.n, opts.w, opts.url) == (10_000, 16, "http://127.0.0.1:8080")
    assert opts.type_weights() == {"noop": 80, "flaky": 10, "always_fail": 5, "sleeper": 5}
    assert opts.priority_weights() == {"critical": 5, "high": 30, "default": 50, "low": 15}
    assert (opts.sleep_ms, opts.flaky_attempts) == (200, 2)
    assert (opts.batch, opts.rate, opts.duration, opts.json) == (0, 0.0, 0.0, False)
    assert opts == LoadOptions()


@pytest.mark.parametrize("dash", ["-", "--"])
def test_go_and_gnu_spellings_are_both_accepted(dash: str) -> None:
    values = {"n": "40", "w": "3", "url": "http://h:1", "pct-noop": "70", "pct-fail": "15"}
    values |= {"sleep-ms": "5", "flaky-attempts": "1", "batch": "20", "timeout": "9"}
    flags = [item for flag, value in values.items() for item in (dash + flag, value)]
    flags.append(dash + "json")
    opts = parse_args(flags)
    assert (opts.n, opts.w, opts.url, opts.pct_noop, opts.pct_fail) == (40, 3, "http://h:1", 70, 15)
    assert (opts.sleep_ms, opts.flaky_attempts, opts.batch, opts.timeout) == (5, 1, 20, 9.0)
    assert opts.json


def test_equals_form_and_open_loop_options() -> None:
    opts = parse_args(["-n=5", "--rate", "1000", "-duration=2.5"])
    assert opts.n == 5 and opts.rate == 1000.0 and opts.total() == 2500
    assert opts.burst() == "1,000/s \u00d7 2 s"
    assert parse_args(["--rate", "200", "-n", "50"]).total() == 50


@pytest.mark.parametrize(
    "argv",
    [
        ["-pct-noop", "90"],  # types add up to 110
        ["-pct-low", "0"],  # priorities add up to 85
        ["-pct-noop", "90", "-pct-fail", "-5"],
        ["-n", "0"],
        ["-w", "0"],
        ["-duration", "5"],  # without -rate
        ["-batch", "-1"],
        ["-nope"],
    ],
)
def test_nonsense_is_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_mix_draws_the_configured_percentages() -> None:
    opts = LoadOptions(n=200_000)
    plan = make_plan(opts, random.Random(7))
    assert len(plan) == 200_000
    types = collections.Counter(t for t, _ in plan)
    priorities = collections.Counter(p for _, p in plan)
    for name, pct in opts.type_weights().items():
        assert types[name] / len(plan) * 100 == pytest.approx(pct, abs=0.5)
    for name, pct in opts.priority_weights().items():
        assert priorities[name] / len(plan) * 100 == pytest.approx(pct, abs=0.5)


def test_mix_is_reproducible_with_a_seed_and_honours_zero_shares() -> None:
    opts = LoadOptions(n=1000, pct_noop=0, pct_flaky=50, pct_fail=50, pct_sleep=0)
    assert make_plan(opts, random.Random(1)) == make_plan(opts, random.Random(1))
    assert {t for t, _ in make_plan(opts, random.Random(1))} == {"flaky", "always_fail"}


def test_flaky_and_sleeper_tasks_carry_their_payloads() -> None:
    opts = LoadOptions(sleep_ms=35, flaky_attempts=3)
    assert task_body("flaky", "high", opts) == {
        "type": "flaky",
        "priority": "high",
        "payload": {"fail_first_n": 3},
    }
    assert task_body("sleeper", "low", opts)["payload"] == {"ms": 35}
    assert task_body("noop", "default", opts)["payload"] == {}
    assert task_body("always_fail", "critical", opts)["payload"] == {}


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    random.Random(3).shuffle(values)
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([4.0], 99) == 4.0
    assert percentile([1.0, 2.0], 50) == 1.0
    assert percentile([], 50) is None


def test_peak_overlap_counts_concurrent_intervals() -> None:
    assert peak_overlap([]) == 0
    assert peak_overlap([(0, 10), (1, 2), (1.5, 3), (5, 6)]) == 3
    assert peak_overlap([(0, 1), (1, 2)]) == 1  # one ends as the next starts


def timing(
    status: str, *, wait_ms: float, run_ms: float, at_ms: float, attempts: int = 1, **kw: object
) -> TaskTiming:
    queued = T0 + dt.timedelta(milliseconds=at_ms)
    first = queued + dt.timedelta(milliseconds=wait_ms)
    start = first + dt.timedelta(milliseconds=100 * (attempts - 1))
    fields: dict[str, object] = dict(
        id=uuid.uuid4(),
        type="noop",
        priority="default",
        status=status,
        attempts=attempts,
        consumer="c1",
        created_at=queued,
        queued_at=queued,
        first_started_at=first,
        started_at=start,
        finished_at=start + dt.timedelta(milliseconds=run_ms),
        reaped=0,
    )
    fields.update(kw)
    return TaskTiming(**fields)  # type: ignore[arg-type]


def test_report_figures_come_from_the_rows() -> None:
    rows = [timing("succeeded", wait_ms=i + 1, run_ms=10, at_ms=i * 10) for i in range(18)]
    rows.append(timing("dead", wait_ms=50, run_ms=5, at_ms=0, attempts=5, type="always_fail"))
    rows.append(timing("succeeded", wait_ms=2, run_ms=1, at_ms=0, attempts=3, consumer="c2"))
    submit = SubmitStats(requested=20, accepted=20, seconds=0.5, latencies=[0.001] * 20)
    report = build_report(burst="20", route="/v1/tasks", submit=submit, timings=rows)

    assert (report.succeeded, report.dead, report.unfinished) == (19, 1, 0)
    assert report.fail_pct == 5.0
    assert report.retries == 4 + 2
    assert report.reaped == 0
    assert report.executors == 2
    assert report.wait_max_ms == pytest.approx(50)
    assert report.wait_p50_ms == pytest.approx(9)
    assert report.by_type == {"noop": {"succeeded": 19}, "always_fail": {"dead": 1}}
    # First accepted at 0 ms; the last to finish is the dead task: its fifth attempt started
    # 50 + 4 x 100 ms in and ran 5 ms.
    assert report.drain_s == pytest.approx(0.455, abs=1e-6)
    assert report.throughput == pytest.approx(20 / 0.455, rel=1e-5)
    assert report.submit_rate == 40.0
    assert report.accept_p50_ms == pytest.approx(1.0)


def test_unfinished_tasks_and_unknown_reaps_are_reported() -> None:
    rows = [
        timing("succeeded", wait_ms=1, run_ms=1, at_ms=0),
        timing("retrying", wait_ms=1, run_ms=1, at_ms=0, finished_at=None, reaped=None),
    ]
    submit = SubmitStats(requested=3, accepted=2, rejected=1, errors=["HTTP 422: bad"])
    report = build_report(burst="3", route="/v1/tasks", submit=submit, timings=rows)
    assert (report.succeeded, report.unfinished, report.rejected) == (1, 1, 1)
    assert report.reaped is None


def test_table_has_the_go_columns_and_the_figures() -> None:
    rows = [timing("succeeded", wait_ms=1.5, run_ms=200, at_ms=0)]
    submit = SubmitStats(requested=1, accepted=1, seconds=0.01, latencies=[0.002])
    report = build_report(burst="1", route="/v1/tasks", submit=submit, timings=rows, concurrency=64)
    text = render(report)
    header, rule, row = text.splitlines()[:3]
    assert [c.strip() for c in header.strip("|").split("|")] == list(COLUMNS)
    assert set(rule) <= {"|", "-", ":", " "}
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == ["1", "1 \u00d7 64", "1"]
    assert cells[5:] == ["200 ms", "1.50 ms", "0.0 %", "0", "0"]
    assert "enqueue → start: p50 1.50 ms" in text
    assert "succeeded 1 · dead 0" in text


def test_durations_are_formatted_readably() -> None:
    assert [fmt_ms(v) for v in (0.123, 12.34, 456.0, 3100.0, 45_000.0, None)] == [
        "0.12 ms",
        "12.3 ms",
        "456 ms",
        "3.10 s",
        "45.0 s",
        "n/a",
    ]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_off_a_terminal_prints_a_line_every_few_seconds() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, clock=clock)
    for i in range(100):
        clock.now = i * 0.1
        progress.show(f"step {i}")
    progress.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].endswith("step 0") and lines[1].endswith("step 50")


def test_the_d_target_allows_for_the_retries_own_backoff() -> None:
    config = config_mod.load({})  # base 500 ms, max 30 s, jitter 500 ms, 5 attempts
    # always_fail waits 0.5 + 1 + 2 + 4 s, plus up to 0.5 s of jitter each time.
    assert backoff_allowance_s(config, LoadOptions()) == pytest.approx(9.5)
    flaky_only = LoadOptions(pct_noop=90, pct_flaky=10, pct_fail=0, pct_sleep=0)
    assert backoff_allowance_s(config, flaky_only) == pytest.approx(0.5 + 1 + 1.0)
    assert load.check(LoadOptions()) is None
