"""Publishing committed tasks to their streams, and retrying when Redis is unreachable.

A task is accepted once Postgres has it; the XADD comes after. If Redis is down the entry
waits here and is re-sent every ``PUBLISH_RETRY_MS`` until Redis answers. (If this process
dies first, the watcher's repair re-sends it from Postgres.)
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Sequence

from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Publish, Streams

log = logging.getLogger(__name__)


class Publisher:
    def __init__(self, streams: Streams, metrics: Metrics, *, retry_ms: int) -> None:
        self._streams = streams
        self._metrics = metrics
        self._retry_s = retry_ms / 1000
        self._backlog: list[Publish] = []
        self._wake = asyncio.Event()

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    async def publish(self, entries: Sequence[Publish]) -> bool:
        """XADD the entries now; on failure keep them for the retry loop. True if sent."""
        if not entries:
            return True
        try:
            await self._streams.publish(entries)
        except Exception as exc:
            # Redis unreachable (or any other failure): keep them, never lose one.
            self._keep(entries, exc)
            return False
        self._count(entries)
        return True

    def _count(self, entries: Sequence[Publish]) -> None:
        for priority, n in collections.Counter(e.priority for e in entries).items():
            self._metrics.published.add(n, {"priority": priority})

    def _keep(self, entries: Sequence[Publish], exc: BaseException) -> None:
        self._metrics.publish_failures.add(len(entries))
        log.warning(
            "could not publish %d tasks, will retry: %s",
            len(entries),
            exc,
            extra={"event": "ingest.publish_deferred"},
        )
        self._backlog.extend(entries)
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Retry deferred publishes until they go through or the service stops."""
        while not stop.is_set():
            if not self._backlog:
                self._wake.clear()
                waiter = asyncio.create_task(self._wake.wait())
                stopper = asyncio.create_task(stop.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                continue
            await asyncio.sleep(self._retry_s)
            await self.flush()

    async def flush(self) -> int:
        """Try once to send everything deferred; returns how many were sent."""
        batch, self._backlog = self._backlog, []
        if not batch:
            return 0
        try:
            await self._streams.publish(batch)
        except Exception:
            self._backlog = batch + self._backlog
            return 0
        self._count(batch)
        log.info("published %d deferred tasks", len(batch), extra={"event": "ingest.published"})
        return len(batch)
