"""Consumer pruning: consumers idle longer than ``CONSUMER_IDLE_MS`` with nothing pending are
removed from the group (atomically, by a Lua script that re-checks, so no pending entry is
ever dropped with its consumer)."""

from __future__ import annotations

import logging

from taskstream.shared.config import JanitorConfig
from taskstream.shared.streams import Streams
from taskstream.shared.supervise import Done, RoleBase

log = logging.getLogger(__name__)


class Pruned(Done, kw_only=True):
    consumers_removed: int = 0


class Consumers(RoleBase):
    name = "janitor.consumers"

    def __init__(self, config: JanitorConfig, streams: Streams) -> None:
        self.interval_s = config.janitor_interval_ms / 1000
        self.config = config
        self._streams = streams

    async def run_once(self) -> Pruned:
        removed = 0
        idle_ms = self.config.consumer_idle_ms
        for c in await self._streams.consumers():
            if c.pending > 0 or c.idle_ms < idle_ms:
                continue
            if await self._streams.remove_idle_consumer(c.priority, c.name, idle_ms):
                removed += 1
                log.info(
                    "removed idle consumer %s from %s",
                    c.name,
                    c.priority,
                    extra={"event": "janitor.consumer_removed"},
                )
        return Pruned(consumers_removed=removed)
