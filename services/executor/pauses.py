"""Which queues are paused, as this executor knows it: the paused priorities and task types,
read from Postgres every ``PAUSE_POLL_MS`` (one query of a few rows), so a pause takes hold
cluster-wide within that.

A paused priority's stream is simply not read: its entries wait in Redis, undelivered (nothing
claimed, no attempt used; the repair does not take them for lost, since the group has not
delivered past them). A task of a paused type can only be recognised once delivered, so the
executor parks it (``Database.park_paused``: still queued, at the same attempt) and
acknowledges its entry; the watcher's unpark role re-publishes it after the resume. Tasks
already running finish.

The hot path pays nothing for this while nothing is paused: the reader tests two sets for
emptiness per read.
"""

from __future__ import annotations

import asyncio
import logging

from taskstream.shared.db import Database
from taskstream.shared.domain import PRIORITIES
from taskstream.shared.errors import StoreError

log = logging.getLogger(__name__)


class Pauses:
    """The paused priorities and types this executor obeys (empty until first read)."""

    def __init__(self, db: Database, *, poll_s: float) -> None:
        self._db = db
        self._poll_s = poll_s
        self.priorities: frozenset[str] = frozenset()
        self.types: frozenset[str] = frozenset()

    def readable(self) -> list[str] | None:
        """The priorities to read; None: all of them (nothing paused)."""
        if not self.priorities:
            return None
        return [p for p in PRIORITIES if p not in self.priorities]

    async def refresh(self) -> bool:
        """Read the pauses again; False (and the last known kept) if Postgres cannot say."""
        try:
            priorities, types = await self._db.paused_names()
        except StoreError as exc:
            log.info("cannot read the queue pauses: %s", exc, extra={"event": "executor.pauses"})
            return False
        if (priorities, types) != (self.priorities, self.types):
            log.info(
                "paused: priorities %s, types %s",
                sorted(priorities) or "none",
                sorted(types) or "none",
                extra={"event": "executor.pauses_changed"},
            )
            self.priorities, self.types = priorities, types
        return True

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            await asyncio.sleep(self._poll_s)
            await self.refresh()
