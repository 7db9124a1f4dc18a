"""Unique tasks: what makes two tasks the same, and the statuses in which a task holds that.

A unique task's identity is the hash of its type and of what its ``unique`` option names: an
explicit ``key`` and the fields listed in ``by`` (``type``, ``priority``, ``payload`` or a
dotted path into it, ``payload.user_id``). The statuses it holds the identity in are a bitmask
(bit i for ``STATUSES[i]``), stored on the task and read by the statements that end tasks
(``shared.sql``: succeeded is bit 8, dead 32, cancelled 64). They must include every status
before the end (a task cannot give its identity away and take it back while it runs), and may
add end states, to keep it after it ended.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from taskstream.shared.domain.task import STATUSES, TERMINAL

BITS: dict[str, int] = {status: 1 << i for i, status in enumerate(STATUSES)}
# Held until the task ends, whatever else is listed.
REQUIRED: tuple[str, ...] = tuple(s for s in STATUSES if s not in TERMINAL)
DEFAULT_STATES: tuple[str, ...] = REQUIRED

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
PERIOD = re.compile(r"^(?P<n>[1-9][0-9]{0,5})(?P<unit>ms|s|m|h|d)$")
_encode = msgspec.json.Encoder(order="sorted").encode


def states_mask(states: Iterable[str]) -> int:
    mask = 0
    for s in states:
        mask |= BITS[s]
    return mask


def missing_states(states: Iterable[str]) -> list[str]:
    """The statuses before the end that ``states`` lacks (it must list all of them)."""
    given = set(states)
    return [s for s in REQUIRED if s not in given]


def period_ms(text: str) -> int | None:
    """``"10m"`` → 600000; None when it is not a period (``<n><ms|s|m|h|d>``, n ≥ 1)."""
    match = PERIOD.match(text)
    if match is None:
        return None
    return int(match["n"]) * _UNITS_MS[match["unit"]]


_MISSING: list[Any] = []


def field_value(field: str, priority: str, payload: Any) -> list[Any]:
    """What ``field`` of ``by`` contributes: ``[value]``, or ``[]`` when the payload has no
    such path (so a missing field and an explicit null are different identities)."""
    if field == "priority":
        return [priority]
    if field == "payload":
        return [payload]
    value = payload
    for part in field.split(".")[1:]:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return [value]


def identity(type: str, priority: str, payload: Any, key: str | None, by: Sequence[str]) -> bytes:
    """The hash of a unique task's identity: its type, ``key`` and the fields of ``by`` (in
    any order; ``type`` is always part of it)."""
    parts: dict[str, Any] = {"type": type}
    if key is not None:
        parts["key"] = key
    for field in by:
        if field != "type":
            parts[field] = field_value(field, priority, payload)
    return hashlib.sha256(_encode(parts)).digest()
