"""When a schedule's ticks fall: a cron expression in an IANA time zone, or a fixed interval.
Pure, no I/O.

Cron expressions (five fields, or one of the usual macros) are read by cronsim, which follows
Debian cron on the days the clocks change: a run whose wall-clock time falls in the hour
skipped when the clocks go forward runs right after the jump; a run in the hour repeated when
they go back runs once (the first time); an expression with a wildcard hour keeps to real time
(``*/30 * * * *`` fires every 30 minutes through both days). The library is used only in
``_cron_after``, so another could replace it without touching the callers. Fixed intervals are
exact in UTC: ticks at ``anchor + k * every`` (the anchor is the schedule's ``start_at``, else
the Unix epoch, so ``every: 1h`` fires on the hour), whatever the time zone says.

Every tick is a UTC ``datetime``; ``next_after`` always returns one strictly later than its
argument (or None when there is none), so walking the ticks never repeats or goes back.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import msgspec
from cronsim import CronSim, CronSimError

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)

# The usual macros, as Debian cron reads them (@reboot is not a recurrence).
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_PART = re.compile(r"(\d+)(ms|s|m|h|d)")
DURATION_MAX_MS = 366 * 86_400_000  # a year (and a day): longer is surely a mistake


class RecurrenceError(ValueError):
    """A spec that does not parse; ``field`` names what is wrong."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class Recurrence(msgspec.Struct, frozen=True, kw_only=True):
    """Either ``cron`` (five fields, read in ``timezone``) or ``every_ms`` from ``anchor``."""

    cron: str | None = None
    every_ms: int | None = None
    timezone: str = "UTC"
    anchor: dt.datetime | None = None  # intervals only; None: the Unix epoch


def parse_duration(text: str, field: str) -> int:
    """Milliseconds in ``500ms``, ``30s``, ``5m``, ``1h``, ``2d`` or a sum like ``1h30m``
    (``0`` alone is zero)."""
    raw = text.strip().lower()
    if raw == "0":
        return 0
    if not raw or _PART.sub("", raw) != "":
        raise RecurrenceError(
            f"{text!r} is not a duration (e.g. 500ms, 30s, 5m, 1h, 1d, 1h30m)", field
        )
    ms = sum(int(n) * _UNITS_MS[u] for n, u in _PART.findall(raw))
    if ms > DURATION_MAX_MS:
        raise RecurrenceError(f"{text!r} is longer than a year", field)
    return ms


def format_duration(ms: int) -> str:
    """The canonical text of a duration: ``1h30m``, ``45s``, ``1s500ms``, ``0s``."""
    if ms == 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s", "ms"):
        n, ms = divmod(ms, _UNITS_MS[unit])
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts)


def parse_cron(expr: str) -> str:
    """The expression as stored (a macro spelled out, fields single-spaced), or raise."""
    text = " ".join(expr.split())
    text = MACROS.get(text.lower(), text)
    if text.startswith("@"):
        raise RecurrenceError(
            f"{expr!r}: unknown macro (use one of {', '.join(sorted(MACROS))})", "cron"
        )
    if "\x00" in text:
        raise RecurrenceError("the cron expression holds a NUL character", "cron")
    try:
        CronSim(text, dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    except (CronSimError, ValueError, KeyError, IndexError) as exc:
        raise RecurrenceError(f"{expr!r} is not a cron expression: {exc}", "cron") from None
    return text


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``, or raise naming the field."""
    return _zone(name)


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    try:
        if not name or "\x00" in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError, IsADirectoryError for "Europe"
        raise RecurrenceError(
            f"{name!r} is not an IANA time zone (e.g. UTC, Europe/Berlin)", "timezone"
        ) from None


def next_after(rec: Recurrence, after: dt.datetime) -> dt.datetime | None:
    """The first tick strictly after ``after`` (UTC), or None if there is none."""
    return next(ticks_after(rec, after), None)


def ticks_after(rec: Recurrence, after: dt.datetime) -> Iterator[dt.datetime]:
    """Every tick strictly after ``after``, in order (UTC)."""
    if rec.every_ms is not None:
        return _every_after(rec.every_ms, rec.anchor or EPOCH, after)
    assert rec.cron is not None
    return _cron_after(rec.cron, after, zone(rec.timezone))


def _every_after(every_ms: int, anchor: dt.datetime, after: dt.datetime) -> Iterator[dt.datetime]:
    step = dt.timedelta(milliseconds=every_ms)
    k = 0 if after < anchor else (after - anchor) // step + 1
    tick = anchor + k * step
    while True:
        yield tick
        tick += step


def _cron_after(expr: str, after: dt.datetime, tz: ZoneInfo) -> Iterator[dt.datetime]:
    # Started inside a repeated hour (its second pass), cronsim may first offer a time of the
    # first pass, before ``after``: ticks are taken strictly later, so the walk never goes
    # back (a fixed-time run in that hour has had its one run).
    it = CronSim(expr, after.astimezone(tz))
    last = after
    while True:
        try:
            local = next(it)
        except StopIteration:
            return
        tick = local.astimezone(dt.UTC)
        if tick > last:
            last = tick
            yield tick


def count_before(
    rec: Recurrence, first: dt.datetime, cutoff: dt.datetime, cap: int
) -> tuple[int, dt.datetime | None]:
    """How many ticks from ``first`` (a tick, counted) fall before ``cutoff``, and the first
    tick at or after it; at most ``cap`` are counted (then the tick after the last counted is
    returned). Intervals are counted by arithmetic, cron ticks one by one."""
    if first >= cutoff:
        return 0, first
    if rec.every_ms is not None:
        step = dt.timedelta(milliseconds=rec.every_ms)
        n = (cutoff - first - _US) // step + 1
        return n, first + n * step
    n = 1
    for tick in ticks_after(rec, first):
        if tick >= cutoff or n >= cap:
            return n, tick
        n += 1
    return n, None
