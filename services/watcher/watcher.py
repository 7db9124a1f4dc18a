"""The watcher: seven roles, the due mover (``due.py``: due retries and delayed tasks onto the
streams, never early), the repair (``repair.py``: re-send what Redis lost), the outbox drain
(``outbox.py``: publish what applications enqueued in their own transactions), the schedules
(``schedules.py``: fire each tick once), the unpark (``unpark.py``: release tasks parked
while their type was paused) and the unwait (``unwait.py``: release tasks that waited for a
concurrency slot) and the fair release (``fair.py``: publish tasks held back for their
tenant's fair share, with ``FAIR_SHARE_ENTRIES``), run by the one supervise loop.
``Watcher`` composes them; ``run_once()`` runs each once (tests)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable

import msgspec

from taskstream.services.watcher.due import DueMover
from taskstream.services.watcher.fair import FairRelease
from taskstream.services.watcher.outbox import OutboxDrain
from taskstream.services.watcher.release import Release
from taskstream.services.watcher.repair import Repair
from taskstream.services.watcher.schedules import ScheduleFirer
from taskstream.services.watcher.unpark import Unpark
from taskstream.services.watcher.unwait import Unwait
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from taskstream.shared.supervise import Role, supervise


class Report(msgspec.Struct, kw_only=True):
    moved: int = 0
    repaired: int = 0
    enqueued: int = 0  # tasks of transactional enqueues published
    fired: int = 0  # schedule ticks that made a task
    unparked: int = 0
    unwaited: int = 0  # tasks that waited for a concurrency slot, re-published
    fair_released: int = 0  # tasks held back for their tenant's fair share, published


class Watcher:
    """The watcher's roles over one pair of stores: ``run(stop)`` until stopped, or
    ``run_once()``."""

    def __init__(
        self,
        config: Config,
        db: Database,
        streams: Streams,
        metrics: Metrics,
        *,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.config = config
        release = Release(streams)
        self.due = DueMover(config.watcher, db, release, metrics)
        self.repairer = Repair(config.watcher, db, streams, release, metrics)
        self.outbox = OutboxDrain(config, db, release, metrics)
        self.schedules = ScheduleFirer(config, db, release, metrics, clock=clock)
        self.unpark = Unpark(config, db, release, metrics)
        self.unwait = Unwait(config, db, streams, release, metrics)
        self.fair = FairRelease(config, db, streams, metrics)

    @property
    def roles(self) -> list[Role]:
        roles: list[Role] = [self.due, self.repairer, self.outbox, self.schedules, self.unpark,
                             self.unwait]  # fmt: skip
        if self.config.access.fair_share_entries > 0:
            roles.append(self.fair)
        return roles

    async def start(self) -> None:
        await self.repairer.start()

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await supervise(self.roles, stop)
        finally:
            await self.outbox.close()

    async def run_once(self) -> Report:
        """Move everything due now, publish what was enqueued, fire every schedule tick that has
        come, release what was unparked, and run one repair pass."""
        report = Report()
        while True:
            moved = await self.due.run_once()
            report.moved += moved.moved
            if not moved.more:
                break
        while True:
            drained = await self.outbox.run_once()
            report.enqueued += drained.published
            if not drained.more:
                break
        while True:
            fired = await self.schedules.run_once()
            report.fired += fired.enqueued + fired.caught_up
            if not fired.more:
                break
        while True:
            unparked = await self.unpark.run_once()
            report.unparked += unparked.unparked
            if not unparked.more:
                break
        report.unwaited = (await self.unwait.run_once()).unwaited
        report.fair_released = (await self.fair.run_once()).released
        report.repaired = (await self.repairer.run_once()).repaired
        return report

    async def move_due(self) -> int:
        return (await self.due.run_once()).moved

    async def repair(self) -> int:
        return (await self.repairer.run_once()).repaired
