"""Query and form values of the console's pages, read one way: a bad value is a 400 page
naming the field (the same rules as the API's parameters)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from taskstream.services.ingest.console.errors import PageError

_PLAIN_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")


def text(q: Mapping[str, Any], name: str) -> str | None:
    value = q.get(name)
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value:
        return None
    if "\x00" in value:
        raise PageError(400, f"{name} must not contain a NUL character")
    return value


def choice(q: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    value = text(q, name)
    if value is not None and value not in allowed:
        raise PageError(400, f"{name} must be one of {', '.join(allowed)}")
    return value


def time(q: Mapping[str, Any], name: str) -> dt.datetime | None:
    """A time: ISO 8601 with a zone, or without one (a ``datetime-local`` field), read as
    UTC."""
    raw = text(q, name)
    if raw is None:
        return None
    try:
        value = dt.datetime.fromisoformat(raw.replace(" ", "T").replace("Z", "+00:00"))
    except ValueError:
        value = None
        for fmt in _PLAIN_FORMATS:
            try:
                value = dt.datetime.strptime(raw, fmt)
                break
            except ValueError:
                continue
    if value is None:
        raise PageError(400, f"{name} must be a time such as 2030-01-31T12:00 (UTC)")
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def task_id(value: str | None, name: str = "id") -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise PageError(400, f"{name} is not a task id") from None


def task_ids(values: list[Any], name: str = "ids") -> list[uuid.UUID]:
    return [task_id(v, name) for v in values]


def cursor(q: Mapping[str, Any], name: str = "cursor") -> uuid.UUID | None:
    raw = text(q, name)
    return task_id(raw, name) if raw is not None else None


def integer(q: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    raw = text(q, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise PageError(400, f"{name} must be a whole number from {low} to {high}")
    return value


def local(value: dt.datetime | None) -> str:
    """A time as a ``datetime-local`` field shows it (UTC; seconds when it has them)."""
    if value is None:
        return ""
    value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S" if value.second else "%Y-%m-%dT%H:%M")
