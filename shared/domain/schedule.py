"""Schedules, as rules with no I/O: a validated spec, each tick's release time (its jitter), and
what a watcher does with the ticks that have come (overlap and catch-up decisions).

A tick is released at its scheduled time plus its jitter (a fixed offset in ``[0, jitter)``
drawn from the schedule's name and the tick, so every watcher agrees), never earlier. When a
pass finds ticks released, each is, by how late it is (``now - release``):

- at most the grace (``SCHEDULE_GRACE_MS``): on time, ``enqueued``;
- later, but within the schedule's ``catchup`` window: ``caught_up`` (enqueued all the same);
- later still: ``missed`` (counted, never run);

oldest first, and in that order the overlap policy decides, looking at the previous run (the
schedule's latest) and at what this pass already made:

- ``skip``: while the previous run has not finished, a tick is ``skipped``;
- ``buffer_one``: while it has not finished, one tick waits (``buffered_for``) and fires once
  it has; further ticks are skipped;
- ``allow``: every tick runs;
- ``cancel_previous``: a previous run that has not started (queued or scheduled, never
  claimed) is cancelled and this tick runs; one that has started is never cancelled, and this
  tick runs beside it. Of the ticks one pass catches up, only the newest runs (the others
  would be cancelled at once: they count as skipped).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid

import msgspec

from taskstream.shared.domain.recurrence import (
    Recurrence,
    RecurrenceError,
    count_before,
    next_after,
    parse_cron,
    parse_duration,
    zone,
)
from taskstream.shared.domain.task import TERMINAL, NewTask

OVERLAPS: tuple[str, ...] = ("skip", "buffer_one", "allow", "cancel_previous")
STATES: tuple[str, ...] = ("active", "paused", "ended")
DEFAULT_CATCHUP = "1h"
MISSED_SCAN = 100_000  # cron ticks counted as missed in one pass at most (intervals: any)
NAME_PATTERN = r"^[A-Za-z0-9_.:\-]+$"


class SpecError(RecurrenceError):
    """A schedule spec that does not validate; ``field`` names the offending field."""


class Spec(msgspec.Struct, frozen=True, kw_only=True):
    """What decides a schedule's ticks and what becomes of them (validated, normalised)."""

    cron: str | None = None
    every_ms: int | None = None
    timezone: str = "UTC"
    overlap: str = "skip"
    catchup_ms: int = 3_600_000
    jitter_ms: int = 0
    start_at: dt.datetime | None = None
    end_at: dt.datetime | None = None

    @property
    def recurrence(self) -> Recurrence:
        return Recurrence(
            cron=self.cron, every_ms=self.every_ms, timezone=self.timezone, anchor=self.start_at
        )

    def timing(self) -> tuple[object, ...]:
        """What places the ticks: when it changes, the next tick is found again."""
        return (self.cron, self.every_ms, self.timezone, self.jitter_ms, self.start_at, self.end_at)


def validate(
    *,
    cron: str | None,
    every: str | None,
    timezone: str,
    overlap: str,
    catchup: str,
    jitter: str,
    start_at: dt.datetime | None,
    end_at: dt.datetime | None,
) -> Spec:
    """The spec from its request fields, or ``SpecError`` naming the first bad one."""
    try:
        if (cron is None) == (every is None):
            raise SpecError("give cron or every, not both and not neither", "cron")
        expr = parse_cron(cron) if cron is not None else None
        every_ms = parse_duration(every, "every") if every is not None else None
        if every_ms is not None and every_ms < 1000:
            raise SpecError("every must be at least 1s", "every")
        zone(timezone)
        if overlap not in OVERLAPS:
            raise SpecError(f"overlap must be one of {', '.join(OVERLAPS)}", "overlap")
        catchup_ms = parse_duration(catchup, "catchup")
        jitter_ms = parse_duration(jitter, "jitter")
    except SpecError:
        raise
    except RecurrenceError as exc:
        raise SpecError(str(exc), exc.field) from None
    if start_at is not None and end_at is not None and end_at <= start_at:
        raise SpecError("end_at must be after start_at", "end_at")
    spec = Spec(
        cron=expr,
        every_ms=every_ms,
        timezone=timezone,
        overlap=overlap,
        catchup_ms=catchup_ms,
        jitter_ms=jitter_ms,
        start_at=start_at.astimezone(dt.UTC) if start_at is not None else None,
        end_at=end_at.astimezone(dt.UTC) if end_at is not None else None,
    )
    probe = start_at or dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    if next_after(spec.recurrence, probe - dt.timedelta(microseconds=1)) is None:
        raise SpecError("this cron expression never fires", "cron")
    return spec


def jitter_offset(name: str, tick: dt.datetime, jitter_ms: int) -> dt.timedelta:
    """The tick's fixed delay in ``[0, jitter_ms)`` (the same for every watcher)."""
    if jitter_ms <= 0:
        return dt.timedelta(0)
    digest = hashlib.sha256(f"{name}|{tick.isoformat()}".encode()).digest()
    return dt.timedelta(milliseconds=int.from_bytes(digest[:8], "big") % jitter_ms)


def release_of(name: str, spec: Spec, tick: dt.datetime | None) -> dt.datetime | None:
    return None if tick is None else tick + jitter_offset(name, tick, spec.jitter_ms)


def first_tick(spec: Spec, now: dt.datetime) -> dt.datetime | None:
    """The first tick a schedule created, changed or resumed at ``now`` will fire: strictly
    after ``now``, not before ``start_at``, not after ``end_at`` (None: no more ticks)."""
    after = now
    if spec.start_at is not None and spec.start_at > now:
        after = spec.start_at - dt.timedelta(microseconds=1)
    return _bounded(spec, next_after(spec.recurrence, after))


def upcoming(spec: Spec, tick: dt.datetime | None, n: int) -> list[dt.datetime]:
    """``tick`` and the ``n - 1`` ticks after it (fewer if the schedule ends)."""
    out: list[dt.datetime] = []
    while tick is not None and len(out) < n:
        out.append(tick)
        tick = _bounded(spec, next_after(spec.recurrence, tick))
    return out


def _bounded(spec: Spec, tick: dt.datetime | None) -> dt.datetime | None:
    if tick is None or (spec.end_at is not None and tick > spec.end_at):
        return None
    return tick


class Previous(msgspec.Struct, frozen=True, kw_only=True):
    """The schedule's latest run, as the overlap policy sees it."""

    busy: bool = False  # its task has not finished (queued, scheduled, running, retrying)
    cancellable: bool = False  # ... and has not started: cancel_previous may cancel it


class Fire(msgspec.Struct, frozen=True, kw_only=True):
    scheduled_for: dt.datetime
    outcome: str  # enqueued | caught_up
    late_s: float | None = None  # how late its release was (None: it waited in the buffer)


class Plan(msgspec.Struct, kw_only=True):
    """What one pass does with one schedule."""

    fires: list[Fire] = msgspec.field(default_factory=list)
    skipped: int = 0
    missed: int = 0
    cancel_previous: bool = False  # cancel the schedule's latest run (it has not started)
    buffered_for: dt.datetime | None = None
    next_tick: dt.datetime | None = None
    next_release: dt.datetime | None = None
    more: bool = False  # stopped at the limit with ticks still released
    looked: int = 0  # ticks looked at one by one (the ones counted in bulk as missed aside)


def plan(
    name: str,
    spec: Spec,
    *,
    next_tick: dt.datetime | None,
    buffered_for: dt.datetime | None,
    previous: Previous,
    now: dt.datetime,
    grace_ms: int,
    limit: int,
) -> Plan:
    """Decide the released ticks of one schedule (see the module's docstring). At most
    ``limit`` ticks are looked at one by one (``more`` then says there are others)."""
    out = Plan(buffered_for=buffered_for)
    rec = spec.recurrence
    grace = dt.timedelta(milliseconds=grace_ms)
    window = max(grace, dt.timedelta(milliseconds=spec.catchup_ms))
    busy, cancellable = previous.busy, previous.cancellable
    if buffered_for is not None and not busy:
        out.fires.append(Fire(scheduled_for=buffered_for, outcome="enqueued"))
        out.buffered_for = None
        busy = cancellable = True
    tick = next_tick
    if tick is not None:
        # Ticks released before the window, whatever their jitter, are missed: counted without
        # being looked at one by one (a long outage of a frequent schedule costs little).
        cutoff = now - window - dt.timedelta(milliseconds=spec.jitter_ms)
        if spec.end_at is not None:
            cutoff = min(cutoff, spec.end_at + dt.timedelta(microseconds=1))
        missed, tick = count_before(rec, tick, cutoff, MISSED_SCAN)
        out.missed += missed
        tick = _bounded(spec, tick)
        if missed >= MISSED_SCAN and tick is not None and tick < cutoff:
            out.more = True
            limit = 0
    looked = 0
    while tick is not None:
        release = tick + jitter_offset(name, tick, spec.jitter_ms)
        if release > now:
            break
        if looked >= limit:
            out.more = True
            break
        looked += 1
        late = now - release
        if late > window:
            out.missed += 1
        else:
            fire = Fire(
                scheduled_for=tick,
                outcome="enqueued" if late <= grace else "caught_up",
                late_s=late.total_seconds(),
            )
            busy, cancellable = _overlap(spec.overlap, out, fire, busy, cancellable)
        tick = _bounded(spec, next_after(rec, tick))
    out.next_tick = tick
    out.next_release = release_of(name, spec, tick)
    out.looked = looked
    return out


def _overlap(
    policy: str, out: Plan, fire: Fire, busy: bool, cancellable: bool
) -> tuple[bool, bool]:
    """Apply the overlap policy to one released tick; the previous run's state after it."""
    if policy == "allow" or not busy:
        out.fires.append(fire)
        return True, True
    if policy == "skip":
        out.skipped += 1
        return busy, cancellable
    if policy == "buffer_one":
        if out.buffered_for is None:
            out.buffered_for = fire.scheduled_for
        else:
            out.skipped += 1
        return busy, cancellable
    # cancel_previous
    if cancellable:
        if out.fires:  # made by this pass, not started: it would be cancelled at once
            out.fires.pop()
            out.skipped += 1
        else:
            out.cancel_previous = True
    out.fires.append(fire)
    return True, True


class Stored(msgspec.Struct, frozen=True, kw_only=True):
    """A schedule as Postgres keeps it."""

    name: str
    spec: Spec
    task: str  # the task body (JSON), validated like POST /v1/tasks
    paused: bool = False
    note: str | None = None
    paused_at: dt.datetime | None = None
    next_tick: dt.datetime | None = None
    next_release: dt.datetime | None = None
    buffered_for: dt.datetime | None = None
    enqueued: int = 0
    caught_up: int = 0
    skipped: int = 0
    missed: int = 0
    triggered: int = 0
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None

    @property
    def state(self) -> str:
        if self.paused:
            return "paused"
        return "ended" if self.next_tick is None else "active"


class Write(msgspec.Struct, frozen=True, kw_only=True):
    """What a create, replace, pause or resume writes (the counters are never written)."""

    spec: Spec
    task: str
    paused: bool
    note: str | None
    paused_at: dt.datetime | None
    next_tick: dt.datetime | None
    next_release: dt.datetime | None
    buffered_for: dt.datetime | None


def _write(
    name: str, spec: Spec, task: str, *, paused: bool, note: str | None,
    paused_at: dt.datetime | None, next_tick: dt.datetime | None,
    buffered_for: dt.datetime | None,
) -> Write:  # fmt: skip
    return Write(
        spec=spec,
        task=task,
        paused=paused,
        note=note,
        paused_at=paused_at,
        next_tick=next_tick,
        next_release=release_of(name, spec, next_tick),
        buffered_for=buffered_for,
    )


def put(
    name: str,
    existing: Stored | None,
    spec: Spec,
    task: str,
    *,
    paused: bool | None,
    note: str | None,
    now: dt.datetime,
) -> Write | None:
    """Create or replace (PUT, apply): what to write, or None when nothing would change.

    A replaced schedule keeps its next tick unless its timing changed (then it starts again
    from the next tick after ``now``, like a new one); ``paused`` and ``note`` left out keep
    what the schedule had, so re-applying a file never resumes a schedule paused by hand."""
    if existing is None:
        stopped = bool(paused)
        return _write(
            name, spec, task, paused=stopped, note=note, paused_at=now if stopped else None,
            next_tick=first_tick(spec, now), buffered_for=None,
        )  # fmt: skip
    new_paused = existing.paused if paused is None else paused
    new_note = existing.note if note is None else note
    timing_changed = existing.spec.timing() != spec.timing()
    if (
        existing.spec == spec
        and msgspec.json.decode(existing.task) == msgspec.json.decode(task)
        and new_paused == existing.paused
        and new_note == existing.note
    ):
        return None
    resumed = existing.paused and not new_paused
    keep_buffer = not (timing_changed or resumed or new_paused) and spec.overlap == "buffer_one"
    return _write(
        name, spec, task, paused=new_paused, note=new_note,
        paused_at=(existing.paused_at or now) if new_paused else None,
        next_tick=first_tick(spec, now) if timing_changed or resumed else existing.next_tick,
        buffered_for=existing.buffered_for if keep_buffer else None,
    )  # fmt: skip


def pause(existing: Stored, note: str | None, now: dt.datetime) -> Write | None:
    """Pause: no tick fires or is counted missed until resumed (None: already paused, same
    note)."""
    if existing.paused and (note is None or note == existing.note):
        return None
    return _write(
        existing.name, existing.spec, existing.task, paused=True,
        note=existing.note if note is None else note, paused_at=existing.paused_at or now,
        next_tick=existing.next_tick, buffered_for=None,
    )  # fmt: skip


def resume(existing: Stored, note: str | None, now: dt.datetime) -> Write | None:
    """Resume from the first tick after ``now`` (None: it was not paused). The pause's note
    goes, unless a new one is given."""
    if not existing.paused:
        return None
    return _write(
        existing.name, existing.spec, existing.task, paused=False, note=note, paused_at=None,
        next_tick=first_tick(existing.spec, now), buffered_for=None,
    )  # fmt: skip


class Due(msgspec.Struct, frozen=True, kw_only=True):
    """A schedule a watcher holds for this pass, with its latest run's task."""

    schedule: Stored
    last_task: uuid.UUID | None = None
    last_status: str | None = None  # None: no run yet, or its task was deleted
    last_started: bool = False

    @property
    def previous(self) -> Previous:
        busy = self.last_status is not None and self.last_status not in TERMINAL
        unstarted = self.last_status in ("queued", "scheduled") and not self.last_started
        return Previous(busy=busy, cancellable=busy and unstarted)


class Firing(msgspec.Struct, frozen=True, kw_only=True):
    """What one pass does with one schedule: its plan, one task per fire (in order), and
    the previous run to cancel."""

    name: str
    plan: Plan
    tasks: list[NewTask]
    cancel: uuid.UUID | None = None
