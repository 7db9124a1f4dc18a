"""When ticks fall: cron in a time zone (DST days, short months, leap days) and fixed
intervals, against a simulated clock (no I/O)."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest

from taskstream.shared.domain.recurrence import (
    Recurrence,
    RecurrenceError,
    count_before,
    format_duration,
    next_after,
    parse_cron,
    parse_duration,
    ticks_after,
    zone,
)

UTC = dt.UTC
BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def ticks_between(rec: Recurrence, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """Every tick in [start, end)."""
    out: list[dt.datetime] = []
    for tick in ticks_after(rec, start - dt.timedelta(microseconds=1)):
        if tick >= end:
            return out
        out.append(tick)
    return out


def local_day(tz: str, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    zone_ = ZoneInfo(tz)
    start = dt.datetime.combine(day, dt.time(0), zone_)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), zone_)
    return start.astimezone(UTC), end.astimezone(UTC)


def test_a_minutely_schedule_over_a_day_has_exactly_1440_ticks() -> None:
    start = dt.datetime(2025, 6, 1, tzinfo=UTC)
    ticks = ticks_between(Recurrence(cron="* * * * *"), start, start + dt.timedelta(days=1))
    assert len(ticks) == 1440
    assert ticks[0] == start and len(set(ticks)) == 1440


# (zone, the day the clocks change, run time, the one UTC time it runs that day)
DST_CASES = [
    # Spring forward: 02:00 → 03:00 local. A run in the skipped hour runs right after the jump.
    (BERLIN, dt.date(2025, 3, 30), "30 2", dt.datetime(2025, 3, 30, 1, 0, tzinfo=UTC)),
    (BERLIN, dt.date(2025, 3, 30), "30 1", dt.datetime(2025, 3, 30, 0, 30, tzinfo=UTC)),
    (NEW_YORK, dt.date(2025, 3, 9), "30 2", dt.datetime(2025, 3, 9, 7, 0, tzinfo=UTC)),
    (NEW_YORK, dt.date(2025, 3, 9), "30 1", dt.datetime(2025, 3, 9, 6, 30, tzinfo=UTC)),
    # Fall back: 03:00 → 02:00 in Berlin, 02:00 → 01:00 in New York. A run in the repeated hour
    # runs once (the first time); the others are not affected.
    (BERLIN, dt.date(2025, 10, 26), "30 2", dt.datetime(2025, 10, 26, 0, 30, tzinfo=UTC)),
    (BERLIN, dt.date(2025, 10, 26), "30 1", dt.datetime(2025, 10, 25, 23, 30, tzinfo=UTC)),
    (NEW_YORK, dt.date(2025, 11, 2), "30 1", dt.datetime(2025, 11, 2, 5, 30, tzinfo=UTC)),
    (NEW_YORK, dt.date(2025, 11, 2), "30 2", dt.datetime(2025, 11, 2, 7, 30, tzinfo=UTC)),
]


@pytest.mark.parametrize(("tz", "day", "at", "expected"), DST_CASES)
def test_a_daily_run_on_a_dst_day_runs_once_at_the_right_moment(
    tz: str, day: dt.date, at: str, expected: dt.datetime
) -> None:
    rec = Recurrence(cron=f"{at} * * *", timezone=tz)
    start, end = local_day(tz, day)
    assert ticks_between(rec, start, end) == [expected]
    # The days around it keep their wall-clock time.
    for other in (day - dt.timedelta(days=1), day + dt.timedelta(days=1)):
        s, e = local_day(tz, other)
        [tick] = ticks_between(rec, s, e)
        minute, hour = (int(x) for x in at.split())
        assert tick.astimezone(ZoneInfo(tz)).time() == dt.time(hour, minute)


@pytest.mark.parametrize(("tz", "day", "at", "expected"), DST_CASES)
def test_walking_from_any_minute_of_a_dst_day_never_repeats_or_goes_back(
    tz: str, day: dt.date, at: str, expected: dt.datetime
) -> None:
    # A schedule created, resumed or looked at at any moment of the day (the second pass of
    # a repeated hour included) finds its next tick strictly later, and never the one run
    # of a fixed time twice.
    rec = Recurrence(cron=f"{at} * * *", timezone=tz)
    start, end = local_day(tz, day)
    moment = start - dt.timedelta(hours=1)
    while moment < end:
        tick = next_after(rec, moment)
        assert tick is not None and tick > moment
        assert tick == expected if moment < expected else tick > end
        moment += dt.timedelta(minutes=5)


def test_a_wildcard_hour_keeps_to_real_time_through_both_dst_days() -> None:
    rec = Recurrence(cron="*/30 * * * *", timezone=NEW_YORK)
    fall_start, fall_end = local_day(NEW_YORK, dt.date(2025, 11, 2))
    fall = ticks_between(rec, fall_start, fall_end)
    assert len(fall) == 50  # a 25-hour day
    assert {b - a for a, b in itertools.pairwise(fall)} == {dt.timedelta(minutes=30)}
    spring_start, spring_end = local_day(NEW_YORK, dt.date(2025, 3, 9))
    assert len(ticks_between(rec, spring_start, spring_end)) == 46  # a 23-hour day


def test_a_fixed_interval_is_exact_in_utc_through_dst() -> None:
    rec = Recurrence(every_ms=3_600_000, timezone=BERLIN)
    start, end = local_day(BERLIN, dt.date(2025, 10, 26))
    ticks = ticks_between(rec, start, end)
    assert len(ticks) == 25
    assert {b - a for a, b in itertools.pairwise(ticks)} == {dt.timedelta(hours=1)}
    assert all(t.minute == 0 and t.second == 0 for t in ticks)  # on the hour (epoch anchor)


def test_an_interval_counts_from_its_anchor() -> None:
    anchor = dt.datetime(2025, 1, 1, 0, 0, 7, tzinfo=UTC)
    rec = Recurrence(every_ms=10_000, anchor=anchor)
    assert next_after(rec, anchor - dt.timedelta(days=1)) == anchor
    assert next_after(rec, anchor) == anchor + dt.timedelta(seconds=10)
    assert next_after(rec, anchor + dt.timedelta(seconds=15)) == anchor + dt.timedelta(seconds=20)


def test_the_31st_runs_only_in_months_that_have_one() -> None:
    rec = Recurrence(cron="0 12 31 * *", timezone=BERLIN)
    ticks = ticks_between(
        rec, dt.datetime(2025, 1, 1, tzinfo=UTC), dt.datetime(2026, 1, 1, tzinfo=UTC)
    )
    assert [t.month for t in ticks] == [1, 3, 5, 7, 8, 10, 12]
    assert all(t.astimezone(ZoneInfo(BERLIN)).hour == 12 for t in ticks)


def test_the_29th_of_february_runs_only_in_leap_years() -> None:
    rec = Recurrence(cron="0 0 29 2 *")
    first = next_after(rec, dt.datetime(2025, 3, 1, tzinfo=UTC))
    assert first == dt.datetime(2028, 2, 29, tzinfo=UTC)
    assert next_after(rec, first) == dt.datetime(2032, 2, 29, tzinfo=UTC)


def test_macros_and_bad_expressions() -> None:
    assert parse_cron("@daily") == "0 0 * * *"
    assert parse_cron("  */5   *  * * * ") == "*/5 * * * *"
    assert parse_cron("@HOURLY") == "0 * * * *"
    for bad in ("@reboot", "* * * *", "61 * * * *", "*/0 * * * *", "0 0 30 2 *", "bogus"):
        with pytest.raises(RecurrenceError) as info:
            parse_cron(bad)
        assert info.value.field == "cron"


def test_time_zones_are_iana_names() -> None:
    assert zone("Europe/Berlin").key == "Europe/Berlin"
    for bad in ("Mars/Olympus", "Europe", "../../etc/passwd", "", "UTC\x00"):
        with pytest.raises(RecurrenceError) as info:
            zone(bad)
        assert info.value.field == "timezone"


def test_durations_parse_and_print_canonically() -> None:
    assert parse_duration("30s", "every") == 30_000
    assert parse_duration("1h30m", "every") == 5_400_000
    assert parse_duration("0", "jitter") == 0
    assert parse_duration("500ms", "jitter") == 500
    assert format_duration(5_400_000) == "1h30m"
    assert format_duration(1_500) == "1s500ms"
    assert format_duration(0) == "0s"
    for bad in ("", "30", "1.5s", "-1s", "1y", "400d"):
        with pytest.raises(RecurrenceError) as info:
            parse_duration(bad, "catchup")
        assert info.value.field == "catchup"


def test_counting_ticks_before_a_cutoff_is_arithmetic_for_intervals_and_capped_for_cron() -> None:
    start = dt.datetime(2025, 1, 1, tzinfo=UTC)
    every = Recurrence(every_ms=1000)
    n, nxt = count_before(every, start, start + dt.timedelta(days=365), cap=10)
    assert (n, nxt) == (365 * 86_400, start + dt.timedelta(days=365))
    cron = Recurrence(cron="* * * * *")
    assert count_before(cron, start, start + dt.timedelta(hours=1), cap=10_000) == (
        60,
        start + dt.timedelta(hours=1),
    )
    assert count_before(cron, start, start + dt.timedelta(hours=1), cap=10) == (
        10,
        start + dt.timedelta(minutes=10),
    )
    assert count_before(cron, start, start, cap=10) == (0, start)
