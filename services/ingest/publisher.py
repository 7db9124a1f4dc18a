"""Publishing committed tasks to their streams, off the request path, and retrying while Redis
is unreachable.

A task is accepted once Postgres has it; its XADD comes after and never holds the answer: the
group commit hands the entries to ``submit`` and answers its requests at once, and one drain
task publishes whatever has gathered in one script call. So a Redis that hangs (a host gone
without a reset: every command waits for the client's socket timeout) or refuses writes (out
of memory) slows nothing but the stream: ingest keeps accepting, and the entries wait here and
are re-sent every ``PUBLISH_RETRY_MS`` until Redis takes them. (If this process dies first, the
watcher's repair re-sends them from Postgres.)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Sequence

from taskstream.shared.db import Database
from taskstream.shared.errors import StoreError
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Publish, Streams

log = logging.getLogger(__name__)


class Publisher:
    def __init__(
        self, streams: Streams, metrics: Metrics, *, retry_ms: int, db: Database | None = None
    ) -> None:
        self._streams = streams
        self._db = db
        self._outbox: list[int] = []  # outbox rows of the entries waiting here
        self._metrics = metrics
        self._retry_s = retry_ms / 1000
        self._pending: list[Publish] = []
        self._sending = 0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._drain: asyncio.Task[None] | None = None
        self._failing = False
        self._closing = False
        self._fair_cap: Callable[[str], int] | None = None

    def share_fairly(self, cap: Callable[[str], int]) -> None:
        """Publish entries that carry a tenant within their tenant's fair share of the
        streams (``cap(tenant)`` unread entries at most); the rest are held back in Postgres
        for the watcher's fair role."""
        self._fair_cap = cap

    @property
    def backlog(self) -> int:
        """Entries committed and not yet published (waiting, or being sent)."""
        return len(self._pending) + self._sending

    def submit(self, entries: Sequence[Publish], outbox_ids: Sequence[int] = ()) -> None:
        """Queue entries for publishing; returns at once. ``outbox_ids``: the outbox rows
        naming them, deleted once they are published (else the watcher re-sends them)."""
        self._outbox.extend(outbox_ids)
        if not entries:
            return
        self._pending.extend(entries)
        if self._drain is None or self._drain.done():
            self._drain = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    async def flush(self) -> int:
        """Try once to send everything waiting; returns how many were sent."""
        async with self._lock:
            batch, self._pending = self._pending, []
            outbox, self._outbox = self._outbox, []
            if not batch:
                await self._outbox_done(outbox)
                return 0
            self._sending = len(batch)
            try:
                held_ok = await self._publish(batch)
            except StoreError as exc:
                self._pending = batch + self._pending
                self._outbox = outbox + self._outbox
                self._deferred(len(batch), exc)
                return 0
            except BaseException:  # cancelled mid-send: keep them (a duplicate is fenced)
                self._pending = batch + self._pending
                self._outbox = outbox + self._outbox
                raise
            finally:
                self._sending = 0
            if held_ok:  # else the outbox rows stay, and the watcher sends their tasks
                await self._outbox_done(outbox)
        if self._failing:
            self._failing = False
            log.info("published %d deferred tasks", len(batch), extra={"event": "ingest.published"})
        for priority, n in collections.Counter(e.priority for e in batch).items():
            self._metrics.published.add(n, {"priority": priority})
        return len(batch)

    async def _publish(self, batch: list[Publish]) -> bool:
        """Add the entries; in fair mode those beyond their tenant's share are held back in
        Postgres. False when the held ones could not be written down."""
        cap = self._fair_cap
        if cap is None:
            await self._streams.publish(batch)
            return True
        fair = [e for e in batch if e.tenant is not None]
        plain = [e for e in batch if e.tenant is None]
        if plain:
            await self._streams.publish(plain)
        if not fair:
            return True
        caps = {t: cap(t) for t in {e.tenant or "default" for e in fair}}
        held = await self._streams.publish_fair(fair, caps)
        if not held or self._db is None:
            return True
        try:
            await self._db.hold_fair(
                [(e.task_id, e.attempt, e.priority, e.tenant or "default", e.trace_context)
                 for e in held]
            )  # fmt: skip
        except StoreError as exc:
            log.warning("could not hold back %d tasks: the watcher will send them: %s",
                        len(held), exc, extra={"event": "ingest.fair_hold_failed"})  # fmt: skip
            return False
        return True

    async def _outbox_done(self, ids: list[int]) -> None:
        """Delete the outbox rows of what was just published. If Postgres cannot be reached
        they stay, and the watcher re-sends their tasks later (a duplicate is fenced)."""
        if ids and self._db is not None:
            try:
                await self._db.outbox_done(ids)
            except StoreError as exc:
                log.info(
                    "outbox rows left for the repair: %s", exc, extra={"event": "ingest.outbox"}
                )

    def _deferred(self, n: int, exc: BaseException) -> None:
        self._metrics.publish_failures.add(n)
        if not self._failing:  # one line per outage, not one per retry
            self._failing = True
            log.warning(
                "could not publish %d tasks, will retry every %.1f s: %s",
                n,
                self._retry_s,
                exc,
                extra={"event": "ingest.publish_deferred"},
            )

    async def _run(self) -> None:
        while not self._closing:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            if await self.flush() == 0 and self._pending and not self._closing:
                # Redis refused or did not answer: wait before the next try (new entries
                # join the backlog meanwhile and go with it).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._retry_s)
                self._wake.clear()

    async def settled(self) -> None:
        """Wait until everything submitted so far has been tried once (sent, or deferred)."""
        while self._pending and not self._failing and self._drain is not None:
            if self._drain.done():
                return
            await asyncio.sleep(0)
        async with self._lock:  # a send in progress
            pass

    async def run(self, stop: asyncio.Event) -> None:
        """Keep publishing until ``stop``, then stop (with one last bounded try)."""
        await stop.wait()
        await self.close()

    async def close(self, timeout_s: float = 5.0) -> None:
        """Stop the drain (letting a send in progress finish), then try once more, all
        within ``timeout_s``; what is left is the repair's."""
        self._closing = True
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                if self._drain is not None:
                    await asyncio.shield(self._drain)
                await self.flush()
