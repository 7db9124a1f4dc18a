"""The only package that talks to Redis (redis-py with hiredis).

One stream per priority and one consumer group of executors. An entry carries only the task id
and the attempt (the fencing token), plus the trace context: the task itself lives in Postgres.
Services call typed methods of ``Streams``; every key comes from ``shared.keys``. The methods
come in families, one module each: ``delivery`` (producers and executors), ``upkeep`` (watcher
and janitor), ``inspect`` (operators and tests), ``limits`` (rates and running slots);
``lease`` extends leases from a thread.
"""

from __future__ import annotations

from taskstream.shared.streams.base import (
    BadEntry,
    ConsumerInfo,
    DeliveryMark,
    PendingEntry,
    Publish,
    Reclaimed,
    StreamStats,
    entry_time_ms,
)
from taskstream.shared.streams.delivery import DeliveryOps
from taskstream.shared.streams.inspect import InspectOps
from taskstream.shared.streams.lease import LeaseExtender
from taskstream.shared.streams.limits import LimitOps, RateDecision, SlotOps, SlotRequest
from taskstream.shared.streams.upkeep import UpkeepOps


class Streams(DeliveryOps, UpkeepOps, InspectOps, LimitOps, SlotOps):
    """Typed operations on the priority streams of one namespace."""


__all__ = [
    "BadEntry",
    "ConsumerInfo",
    "DeliveryMark",
    "LeaseExtender",
    "PendingEntry",
    "Publish",
    "RateDecision",
    "Reclaimed",
    "SlotRequest",
    "StreamStats",
    "Streams",
    "entry_time_ms",
]
