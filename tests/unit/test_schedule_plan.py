"""A schedule's rules with no I/O: its spec's validation, jitter, and what a pass does with the
ticks that have come (catch-up window and overlap policies) against a simulated clock."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from taskstream.shared.domain import schedule
from taskstream.shared.domain.schedule import Previous, Spec, SpecError

T0 = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)
GRACE_MS = 5_000


def spec(**fields: Any) -> Spec:
    values: dict[str, Any] = {
        "cron": None, "every": "1m", "timezone": "UTC", "overlap": "skip", "catchup": "1h",
        "jitter": "0s", "start_at": None, "end_at": None,
    }  # fmt: skip
    values.update(fields)
    return schedule.validate(**values)


def plan(s: Spec, next_tick: dt.datetime, now: dt.datetime, **kw: Any) -> schedule.Plan:
    kw.setdefault("previous", Previous())
    kw.setdefault("buffered_for", None)
    return schedule.plan(
        "s", s, next_tick=next_tick, now=now, grace_ms=GRACE_MS, limit=kw.pop("limit", 10_000),
        **kw,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"every": None}, "cron"),
        ({"cron": "* * * * *"}, "cron"),
        ({"every": None, "cron": "nope"}, "cron"),
        ({"every": "soon"}, "every"),
        ({"every": "500ms"}, "every"),
        ({"timezone": "Nowhere/Land"}, "timezone"),
        ({"overlap": "sometimes"}, "overlap"),
        ({"catchup": "1 hour"}, "catchup"),
        ({"jitter": "-1s"}, "jitter"),
        ({"start_at": T0, "end_at": T0}, "end_at"),
    ],
)
def test_a_bad_spec_names_its_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as info:
        spec(**fields)
    assert info.value.field == field


def test_a_tick_is_never_released_before_its_time_and_its_jitter_is_stable() -> None:
    s = spec(jitter="30s")
    offsets = {schedule.jitter_offset("s", T0 + k * MINUTE, s.jitter_ms) for k in range(200)}
    assert all(dt.timedelta(0) <= o < dt.timedelta(seconds=30) for o in offsets)
    assert len(offsets) > 100  # spread, not one value
    assert schedule.jitter_offset("s", T0, 30_000) == schedule.jitter_offset("s", T0, 30_000)
    release = schedule.release_of("s", s, T0)
    assert release is not None
    assert plan(s, T0, release - dt.timedelta(microseconds=1)).fires == []
    assert [f.scheduled_for for f in plan(s, T0, release).fires] == [T0]


def test_first_tick_is_after_now_and_not_before_start_at() -> None:
    assert schedule.first_tick(spec(), T0) == T0 + MINUTE
    start = T0 + dt.timedelta(days=2, seconds=30)
    s = spec(every="1m", start_at=start)
    assert schedule.first_tick(s, T0) == start  # intervals count from start_at
    ended = spec(end_at=T0 - dt.timedelta(days=1), start_at=T0 - dt.timedelta(days=2))
    assert schedule.first_tick(ended, T0) is None


def test_ticks_late_within_the_grace_are_enqueued_then_caught_up_then_missed() -> None:
    # A watcher down for 3 hours, catchup 1h, allow: the last hour's ticks are caught up
    # (late by 1 to 60 minutes), those before are missed, the tick just now is on time.
    s = spec(overlap="allow", catchup="1h")
    now = T0 + dt.timedelta(hours=3)
    p = plan(s, T0 + MINUTE, now)
    outcomes = [f.outcome for f in p.fires]
    assert p.missed == 119
    assert outcomes.count("caught_up") == 60 and outcomes.count("enqueued") == 1
    assert [f.scheduled_for for f in p.fires] == [T0 + k * MINUTE for k in range(120, 181)]
    assert p.next_tick == now + MINUTE and not p.more


def test_skip_starts_nothing_while_the_previous_run_is_busy() -> None:
    s = spec(overlap="skip")
    busy = plan(s, T0, T0 + 2 * MINUTE, previous=Previous(busy=True))
    assert (busy.fires, busy.skipped) == ([], 3)
    # Catching up with nothing running: the oldest runs, the rest would overlap it.
    idle = plan(s, T0, T0 + 2 * MINUTE)
    assert ([f.scheduled_for for f in idle.fires], idle.skipped) == ([T0], 2)


def test_buffer_one_keeps_one_waiting_and_fires_it_when_the_previous_finished() -> None:
    s = spec(overlap="buffer_one")
    p = plan(s, T0, T0 + 2 * MINUTE, previous=Previous(busy=True))
    assert (p.fires, p.buffered_for, p.skipped) == ([], T0, 2)
    still = plan(s, T0 + 3 * MINUTE, T0 + 150 * dt.timedelta(seconds=1),
                 buffered_for=T0, previous=Previous(busy=True))  # fmt: skip
    assert (still.fires, still.buffered_for) == ([], T0)
    done = plan(s, T0 + 3 * MINUTE, T0 + 3 * MINUTE, buffered_for=T0)
    assert [f.scheduled_for for f in done.fires] == [T0]  # the buffered one, then…
    assert (done.buffered_for, done.skipped) == (T0 + 3 * MINUTE, 0)  # …the new one waits


def test_allow_starts_every_tick() -> None:
    p = plan(spec(overlap="allow"), T0, T0 + 2 * MINUTE, previous=Previous(busy=True))
    assert len(p.fires) == 3 and p.skipped == 0


def test_cancel_previous_cancels_an_unstarted_run_never_a_started_one() -> None:
    s = spec(overlap="cancel_previous")
    queued = plan(s, T0, T0, previous=Previous(busy=True, cancellable=True))
    assert queued.cancel_previous and len(queued.fires) == 1
    running = plan(s, T0, T0, previous=Previous(busy=True, cancellable=False))
    assert not running.cancel_previous and len(running.fires) == 1
    # Catching up three ticks: only the newest runs (the others would be cancelled at once).
    caught = plan(s, T0, T0 + 2 * MINUTE, previous=Previous(busy=True, cancellable=False))
    assert [f.scheduled_for for f in caught.fires] == [T0 + 2 * MINUTE]
    assert caught.skipped == 2 and not caught.cancel_previous


def test_a_pass_stops_at_its_limit_and_says_there_is_more() -> None:
    p = plan(spec(overlap="allow"), T0, T0 + 9 * MINUTE, limit=4)
    assert len(p.fires) == 4 and p.more and p.next_tick == T0 + 4 * MINUTE


def test_a_schedule_ends_at_end_at_and_counts_no_tick_after_it_as_missed() -> None:
    s = spec(start_at=T0 - dt.timedelta(days=1), end_at=T0 + 2 * MINUTE, overlap="allow")
    p = plan(s, T0, T0 + dt.timedelta(days=3))
    assert p.next_tick is None and p.missed == 3 and p.fires == []


def test_a_year_of_missed_secondly_ticks_is_counted_without_walking_them() -> None:
    s = spec(every="1s", catchup="0", overlap="allow")
    p = plan(s, T0, T0 + dt.timedelta(days=365))
    assert p.missed == 365 * 86_400 - 5 and len(p.fires) == 6  # the grace's 5 s (and now)
