"""Path and query parameters, parsed one way for every route: a bad value is ``Invalid``
(400) naming the parameter."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Mapping

from aiohttp import web

from taskstream.services.ingest.errors import invalid
from taskstream.shared.domain import PRIORITIES


def task_id(request: web.Request, name: str = "id") -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise invalid(400, "not a task id", name) from None


def choice(q: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    """An optional value from ``allowed`` (absent or empty: None)."""
    value = q.get(name) or None
    if value is not None and value not in allowed:
        raise invalid(400, f"{name} must be one of {', '.join(allowed)}", name)
    return value


def text(q: Mapping[str, str], name: str) -> str | None:
    """An optional free-text value (absent or empty: None); NUL is refused (Postgres text
    cannot hold it)."""
    value = q.get(name) or None
    if value is not None and "\x00" in value:
        raise invalid(400, f"{name} must not contain a NUL character", name)
    return value


def priority(value: str, name: str = "priority") -> str:
    if value not in PRIORITIES:
        raise invalid(400, f"{name} must be one of {', '.join(PRIORITIES)}", name)
    return value


def integer(q: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """An optional integer in ``[low, high]`` (absent or empty: ``default``)."""
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise invalid(400, f"{name} must be an integer from {low} to {high}", name)
    return value


def time(q: Mapping[str, str], name: str) -> dt.datetime | None:
    """An optional ISO 8601 time with a zone."""
    raw = q.get(name)
    if not raw:
        return None
    try:
        # An unencoded "+" of a UTC offset arrives as a space.
        value: dt.datetime | None = dt.datetime.fromisoformat(raw.replace(" ", "+"))
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        message = f"{name} must be an ISO 8601 time with a zone, e.g. 2030-01-01T00:00:00Z"
        raise invalid(400, message, name)
    return value


def uuid_cursor(q: Mapping[str, str], name: str = "cursor") -> uuid.UUID | None:
    raw = q.get(name)
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise invalid(400, "bad cursor", name) from None


WAIT_MAX_S = 60.0


def wait_seconds(q: Mapping[str, str], name: str = "wait") -> float | None:
    """``?wait=S``: seconds to wait for a task to end, 0 < S <= 60 (absent or empty: None).
    A bad value is 422 naming it."""
    raw = q.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value <= WAIT_MAX_S:  # NaN fails too
        raise invalid(422, f"{name} must be a number of seconds, more than 0, at most 60", name)
    return value
