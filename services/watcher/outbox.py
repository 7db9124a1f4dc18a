"""The outbox drain: publishes at once the tasks applications enqueued inside their own
transactions (``taskstream.enqueue``).

Such a task's outbox row (``source = 'enqueue'``) and a notification on ``taskstream_outbox``
commit with the application's transaction. This role listens on one connection of its own and
is woken by each notification: it takes the rows no other watcher holds (``FOR UPDATE SKIP
LOCKED``), publishes their still-queued tasks, and deletes the rows, in one transaction. It
also runs every ``OUTBOX_INTERVAL_MS``, and after its listening connection was made again, so
a missed notification costs at most that long; the repair re-sends any outbox row older than
``OUTBOX_GRACE_MS`` besides. A crash after the publish and before the commit leaves the rows:
their tasks are published again and fencing drops the duplicate entries. Rows ingest and the
movers write (source null) are left to their own publishers, so nothing is published twice by
design.
"""

from __future__ import annotations

from taskstream.services.watcher.release import Release
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.db.listen import OUTBOX_CHANNEL, Listener
from taskstream.shared.metrics import Metrics
from taskstream.shared.supervise import Done, RoleBase


class Drained(Done, kw_only=True):
    rows: int = 0
    published: int = 0


class OutboxDrain(RoleBase):
    name = "watcher.outbox"

    def __init__(self, config: Config, db: Database, release: Release, metrics: Metrics) -> None:
        self.interval_s = config.watcher.outbox_interval_ms / 1000
        self._batch = config.watcher.watch_batch
        self._url = config.stores.database_url
        self._db = db
        self._release = release
        self._metrics = metrics
        self.listener: Listener | None = None

    async def start(self) -> None:
        """Listen for enqueues' notifications (in the background: a Postgres that is down
        delays only the wake-ups; the interval still drains)."""
        if self.listener is None:
            self.listener = Listener(
                self._url, [OUTBOX_CHANNEL], lambda _channel, _payload: self.wake(), self.wake
            )
            await self.listener.start()

    async def run_once(self) -> Drained:
        rows, published = await self._db.drain_enqueued(self._batch, self._release.publish)
        if published:
            self._metrics.outbox_published.add(published)
        return Drained(rows=rows, published=published, more=rows >= self._batch)

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.close()
            self.listener = None
