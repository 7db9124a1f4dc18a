"""Group commit: concurrent requests share one multi-row INSERT and one pipelined XADD.

Requests queue their tasks here; one writer takes everything queued (up to ``max_rows``) into
a single transaction, then publishes every queued task in one round trip, then answers each
request from the shared result. Nothing waits on a timer: while one commit is in flight the
next group gathers, so a lone request goes straight through and a busy ingest commits in
large groups. A request is answered only after its rows are committed; if the commit fails,
every request of the group gets the error and nothing of the group is stored. If Postgres
refuses a value (``BadData``: something validation let through), the group is committed again
request by request, and a refused request task by task, so one bad task costs only itself: it
is reported in ``InsertResult.rejected`` and its neighbours are stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from taskstream.services.ingest.publisher import Publisher
from taskstream.shared.db import Database
from taskstream.shared.domain import InsertResult, NewTask
from taskstream.shared.errors import BadData
from taskstream.shared.faults import crash_point
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Publish

log = logging.getLogger(__name__)

Waiting = tuple[list[NewTask], "asyncio.Future[InsertResult]"]


class GroupCommit:
    def __init__(
        self,
        db: Database,
        publisher: Publisher,
        metrics: Metrics,
        *,
        max_rows: int = 2000,
        key_ttl_ms: int = 24 * 3_600_000,
        fair: bool = False,
    ) -> None:
        self._db = db
        self._publisher = publisher
        self._metrics = metrics
        self._max_rows = max_rows
        self._key_ttl_ms = key_ttl_ms
        self._fair = fair  # entries carry their tenant: they count toward its fair share
        self._queue: list[Waiting] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    async def insert(self, tasks: list[NewTask]) -> InsertResult:
        """Commit ``tasks`` (with whatever else is waiting) and publish the queued ones."""
        if not tasks:
            return InsertResult(inserted={}, existing={})
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._run())
        future: asyncio.Future[InsertResult] = asyncio.get_running_loop().create_future()
        self._queue.append((tasks, future))
        self._wake.set()
        return await future

    async def insert_counted(
        self, tasks: list[NewTask], tenant: str, max_in_flight: int
    ) -> InsertResult:
        """Commit the tasks of a tenant with an in-flight quota in a transaction of their own
        (the quota is checked against the tenant's counter under its lock: ``QuotaExceeded``
        refuses the whole request), then publish the queued ones."""
        if not tasks:
            return InsertResult(inserted={}, existing={})
        result = await self._db.insert_tasks_counted(
            tasks, tenant, max_in_flight, key_ttl_ms=self._key_ttl_ms
        )
        self._metrics.enqueued.add(len(result.inserted))
        self._publish(tasks, result)
        return result

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
            group = self._take()
            # Shielded: a group being committed is finished and answered even at shutdown.
            await asyncio.shield(self._commit(group))

    def _take(self) -> list[Waiting]:
        group: list[Waiting] = []
        rows = 0
        while self._queue and (not group or rows + len(self._queue[0][0]) <= self._max_rows):
            waiting = self._queue.pop(0)
            group.append(waiting)
            rows += len(waiting[0])
        return group

    async def _commit(self, group: list[Waiting]) -> None:
        tasks = [t for waiting, _ in group for t in waiting]
        try:
            result = await self._insert(tasks, split=len(group) > 1 or len(tasks) > 1)
        except Exception as exc:
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            return
        self._metrics.enqueued.add(len(result.inserted))
        crash_point("ingest.after_commit")
        self._publish(tasks, result)
        for _, future in group:
            if not future.done():  # a client that went away: its tasks are committed anyway
                future.set_result(result)

    def _publish(self, tasks: list[NewTask], result: InsertResult) -> None:
        contexts = {t.id: t.trace_context for t in tasks}
        # Published off the answer's path: a Redis that hangs cannot hold requests.
        self._publisher.submit(
            [
                Publish(
                    priority=v.priority,
                    task_id=v.id,
                    attempt=v.attempt,
                    trace_context=contexts.get(v.id),
                    tenant=v.tenant if self._fair else None,
                )
                for v in result.inserted.values()
                if v.status == "queued"
            ],
            result.outbox_ids,
        )

    async def _insert(self, tasks: list[NewTask], *, split: bool) -> InsertResult:
        """Insert ``tasks`` in one statement; if Postgres refuses a value, one by one."""
        try:
            return await self._db.insert_tasks(tasks, key_ttl_ms=self._key_ttl_ms)
        except BadData as exc:
            if not split:
                return InsertResult(inserted={}, existing={}, rejected={tasks[0].id: str(exc)})
        log.warning(
            "Postgres refused a value in a group of %d tasks: inserting them one by one",
            len(tasks),
            extra={"event": "ingest.refused"},
        )
        merged = InsertResult(inserted={}, existing={})
        for task in tasks:
            one = await self._insert([task], split=False)
            merged.inserted.update(one.inserted)
            merged.existing.update(one.existing)
            merged.rejected.update(one.rejected)
            merged.outbox_ids.extend(one.outbox_ids)
        return merged
