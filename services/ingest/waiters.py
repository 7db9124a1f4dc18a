"""Waiting for tasks to end without polling: ``GET /v1/tasks/{id}?wait=S``.

Every statement that ends tasks sends one notification on commit naming them (or ``*`` when
there are too many to name, ``shared/db/listen.py``). Ingest holds one listening connection,
opened with the first wait, and a future per waiting request, by task id. A notification
wakes the waiters it names: one query reads all of those tasks that have ended, however many
requests wait, and queries for notifications that arrive meanwhile are folded into the next
one, so Postgres sees a few queries per completion batch, never one per waiter.

A waiter registers its future before it reads its task, so an end committed after that read
is always noticed; after the listening connection was lost and made again (notifications sent
meanwhile are gone), every waiter is looked at once. At shutdown every waiter is answered with
its task as it stands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from taskstream.shared.db import Database
from taskstream.shared.db.listen import ALL, DONE_CHANNEL, Listener
from taskstream.shared.domain import TERMINAL, Task
from taskstream.shared.errors import StoreError

log = logging.getLogger(__name__)

RETRY_S = 0.5  # between looks while Postgres cannot be read
# None: look again now (shutdown); a Task: it has ended.
Woken = asyncio.Future[Task | None]


class Waiters:
    def __init__(self, db: Database, database_url: str) -> None:
        self._db = db
        self._url = database_url
        self.listener: Listener | None = None
        self._waiting: dict[uuid.UUID, set[Woken]] = {}
        self._due: set[uuid.UUID] = set()  # named by a notification, to look at
        self._all = False  # look at every waiter (reconnected, or "*")
        self._checker: asyncio.Task[None] | None = None
        self.queries = 0  # queries made to wake waiters (tests count them)

    @property
    def count(self) -> int:
        """Requests waiting now."""
        return sum(len(futures) for futures in self._waiting.values())

    async def wait(
        self, task_id: uuid.UUID, timeout_s: float, tenant: str | None = None
    ) -> Task | None:
        """The task as soon as it has ended, or as it stands after ``timeout_s``; None if
        there is no such task (of ``tenant``, when given)."""
        if self.listener is None:
            self.listener = Listener(self._url, [DONE_CHANNEL], self._notified, self._reconnected)
            await self.listener.start()
        future: Woken = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(task_id, set()).add(future)
        try:
            view = await self._db.get_task(task_id, tenant)
            if view is None or view.status in TERMINAL:
                return view
            with contextlib.suppress(TimeoutError):
                ended = await asyncio.wait_for(asyncio.shield(future), timeout_s)
                if ended is not None:
                    return ended
            return await self._db.get_task(task_id, tenant)
        finally:
            futures = self._waiting.get(task_id)
            if futures is not None:
                futures.discard(future)
                if not futures:
                    del self._waiting[task_id]

    def release_all(self) -> None:
        """Answer every waiter now with its task as it stands (shutdown)."""
        for futures in self._waiting.values():
            for future in futures:
                if not future.done():
                    future.set_result(None)

    async def close(self) -> None:
        self.release_all()
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker
        if self.listener is not None:
            await self.listener.close()

    def _notified(self, channel: str, payload: str) -> None:
        if not self._waiting:  # nobody waits: the usual case costs nothing more
            return
        if payload == ALL:
            self._all = True
        else:
            for part in payload.split(","):
                try:
                    task_id = uuid.UUID(part)
                except ValueError:
                    continue
                if task_id in self._waiting:
                    self._due.add(task_id)
        self._kick()

    def _reconnected(self) -> None:
        """Notifications sent while not listening are lost: look at every waiter."""
        if self._waiting:
            self._all = True
            self._kick()

    def _kick(self) -> None:
        if (self._all or self._due) and (self._checker is None or self._checker.done()):
            self._checker = asyncio.get_running_loop().create_task(self._check())

    async def _check(self) -> None:
        """Wake the waiters of the tasks named since the last look, one query at a time."""
        while self._all or self._due:
            if self._all:
                ids = list(self._waiting)
                self._all = False
            else:
                ids = [i for i in self._due if i in self._waiting]
            self._due.clear()
            if not ids:
                continue
            self.queries += 1
            try:
                ended = await self._db.finished_tasks(ids)
            except StoreError as exc:
                # Postgres is away: look at every waiter again in a moment (what was named is
                # no longer known), while any waits; a waiter whose time runs out meanwhile is
                # answered by its own read (503 while Postgres is down).
                log.warning("cannot wake waiters: %s", exc, extra={"event": "ingest.wait"})
                await asyncio.sleep(RETRY_S)
                self._all = bool(self._waiting)
                continue
            for view in ended:
                for future in self._waiting.get(view.id, ()):
                    if not future.done():
                        future.set_result(view)
