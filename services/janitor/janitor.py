"""The janitor: six roles, each in its own file, run by the one supervise loop: the reclaim
of stalled entries with poison quarantine (``reclaim.py``, ``poison.py``), orphans whose entry
Redis lost (``orphans.py``), trimming (``trim.py``), consumer pruning (``consumers.py``), the
queue gauges (``gauges.py``) and retention (``retention.py``). ``Janitor`` composes them;
``run_once()`` runs the first five once (retention has its own tests and interval)."""

from __future__ import annotations

import asyncio
import random

import msgspec

from taskstream.services.janitor.consumers import Consumers
from taskstream.services.janitor.gauges import Gauges
from taskstream.services.janitor.orphans import Orphans
from taskstream.services.janitor.reclaim import Reclaim, Reclaimed
from taskstream.services.janitor.retention import Retention
from taskstream.services.janitor.trim import Trim
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.errors import StoreError, StoreFull
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from taskstream.shared.supervise import Role, supervise


class Report(msgspec.Struct, kw_only=True):
    reclaimed: int = 0  # expired leases turned into failed attempts
    poisoned: int = 0  # dead-lettered for too many deliveries
    redelivered: int = 0  # delivered, never claimed: sent again
    dropped: int = 0  # stale, duplicate or deleted entries acknowledged
    bad: int = 0  # undecodable entries kept in dead_entries
    orphans: int = 0  # running tasks whose entry Redis lost
    trimmed: int = 0
    consumers_removed: int = 0


class Janitor:
    """The janitor's roles over one pair of stores: ``run(stop)`` until stopped, or
    ``run_once()``."""

    def __init__(
        self,
        config: Config,
        db: Database,
        streams: Streams,
        metrics: Metrics,
        *,
        name: str,
        rand: random.Random | None = None,
    ) -> None:
        self.config = config
        self.name = name
        interval = config.janitor.janitor_interval_ms / 1000
        rand = rand or random.Random()
        self.reclaim = Reclaim(
            config.janitor, config.lease, db, streams, metrics, consumer=name, rand=rand
        )
        self.orphans = Orphans(
            config.lease,
            db,
            streams,
            metrics,
            interval_s=interval,
            sweep_batch=config.watcher.sweep_batch,
            rand=rand,
        )
        self.trim = Trim(streams, metrics, interval_s=interval)
        self.consumers = Consumers(config.janitor, streams)
        self.gauges = Gauges(db, streams, metrics, interval_s=interval)
        self.retention = Retention(config.retention, db)

    @property
    def roles(self) -> list[Role]:
        return [
            self.reclaim,
            self.orphans,
            self.trim,
            self.consumers,
            self.gauges,
            self.retention,
        ]

    async def run(self, stop: asyncio.Event) -> None:
        await supervise(self.roles, stop, on_failure=self._on_failure)

    def _on_failure(self, role: Role, exc: StoreError) -> None:
        # Redis refuses writes for lack of memory: trimming (which frees it) runs now,
        # before anything else retries.
        if isinstance(exc, StoreFull) and role is not self.trim:
            self.trim.wake()

    async def run_once(self) -> Report:
        """One pass of every role, in order: reclaim, orphans, trim, consumers, gauges."""
        await self.reclaim.start()
        reclaimed: Reclaimed = await self.reclaim.run_once()
        report = Report(**{f: getattr(reclaimed, f) for f in Report.__struct_fields__[:5]})
        report.orphans = (await self.orphans.run_once()).orphans
        report.trimmed = (await self.trim.run_once()).trimmed
        report.consumers_removed = (await self.consumers.run_once()).consumers_removed
        await self.gauges.run_once()
        return report
