"""Trimming: removes the entries every group has delivered and acknowledged (``XTRIM MINID``,
exact), so streams stay bounded; nothing unacknowledged or undelivered is ever removed."""

from __future__ import annotations

from taskstream.shared.domain import PRIORITIES
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from taskstream.shared.supervise import Done, RoleBase


class Trimmed(Done, kw_only=True):
    trimmed: int = 0


class Trim(RoleBase):
    name = "janitor.trim"

    def __init__(self, streams: Streams, metrics: Metrics, *, interval_s: float) -> None:
        self.interval_s = interval_s
        self._streams = streams
        self._metrics = metrics

    async def run_once(self) -> Trimmed:
        done = Trimmed()
        for priority in PRIORITIES:
            trimmed = await self._streams.trim_acknowledged(priority)
            if trimmed:
                self._metrics.trimmed.add(trimmed, {"priority": priority})
            done.trimmed += trimmed
        return done
