"""Small text helpers for the operator commands: durations in and out, aligned tables, times."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: str) -> int:
    """Milliseconds in ``500ms``, ``30s``, ``5m``, ``1h``, ``2d`` or a sum like ``1h30m``
    (``0`` alone is allowed); raises ``ValueError`` with a readable message."""
    raw = text.strip().lower()
    if raw == "0":
        return 0
    if not raw or _PART.sub("", raw) != "":
        raise ValueError(f"{text!r} is not a duration (e.g. 500ms, 30s, 5m, 1h, 1h30m)")
    return round(sum(float(n) * _UNITS_MS[u] for n, u in _PART.findall(raw)))


def format_duration(ms: int | None) -> str:
    """A short human duration: ``850ms``, ``12.3s``, ``5m04s``, ``2h05m``, ``3d04h``; ``-``
    for none."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    s = ms // 1000
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86_400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86_400}d{s % 86_400 // 3600:02d}h"


def format_time(value: dt.datetime | None) -> str:
    """UTC, to the millisecond: ``2030-01-01T12:00:00.000Z``; ``-`` for none."""
    if value is None:
        return "-"
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """An aligned plain-text table: numbers right-aligned, everything else left; ``None``
    shows as ``-``. Columns are two spaces apart; no trailing spaces."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    numeric = [
        any(_is_number(r[i]) for r in rows) and all(_is_number(r[i]) or r[i] is None for r in rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if right else v.ljust(w)
            for v, w, right in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(row) for row in cells)])


def shorten(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
