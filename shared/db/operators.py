"""What operators read and change: queue depths, task histories, dead letters."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from taskstream.shared import sql
from taskstream.shared.db.base import (
    Base,
    _dead_letter_view,
    _dlq_args,
    _dlq_ref,
    _error_info,
    task_view,
)
from taskstream.shared.domain import Publisher, Ready
from taskstream.shared.ops_models import (
    AttemptView,
    DeadLetterView,
    DlqFilter,
    DlqRef,
    TaskRecord,
    TaskSummary,
)


class OperatorQueries(Base):
    """What operators read and change: queue depths, task histories, dead letters."""

    async def queue_depths(self) -> dict[str, dict[str, int]]:
        """Per priority: due rows waiting by kind (``retry``, ``delayed``) and ``dead``
        letters held."""
        out: dict[str, dict[str, int]] = {}
        for r in await self._pool.fetch(sql.QUEUE_DEPTHS):
            out.setdefault(r["priority"], {})[r["kind"]] = int(r["n"])
        return out

    async def task_summaries(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, TaskSummary]:
        """Type, status, attempt and age of several tasks (one query, no payload)."""
        rows = await self._pool.fetch(sql.TASK_SUMMARIES, list(ids))
        return {r["id"]: TaskSummary(**dict(r)) for r in rows}

    async def task_record(self, task_id: uuid.UUID, tenant: str | None = None) -> TaskRecord | None:
        """A task row (if it is ``tenant``'s, when given), its failed attempts and its dead
        letter, read in one snapshot."""
        snapshot = {"isolation": "repeatable_read", "readonly": True}
        async with self._pool.acquire() as conn, conn.transaction(**snapshot):
            row = await conn.fetchrow(sql.SELECT_TASK_OF, task_id, tenant)
            if row is None:
                return None
            attempts = await conn.fetch(sql.SELECT_ATTEMPTS, task_id)
            letter = await conn.fetchrow(sql.SELECT_DEAD_LETTER, task_id)
        return TaskRecord(
            task=task_view(row),
            first_attempt=row["first_attempt"],
            consumer=row["consumer"],
            entry_id=row["entry_id"],
            attempts=[
                AttemptView(
                    attempt=a["attempt"],
                    outcome=a["outcome"],
                    consumer=a["consumer"],
                    started_at=a["started_at"],
                    finished_at=a["finished_at"],
                    error=_error_info(a["error"]),
                )
                for a in attempts
            ],
            dead_letter=_dead_letter_view(letter) if letter is not None else None,
        )

    async def list_dead_letters(
        self,
        where: DlqFilter,
        *,
        after: tuple[dt.datetime, uuid.UUID] | None,
        limit: int,
        tenant: str | None = None,
    ) -> list[DeadLetterView]:
        """A page of dead letters, newest first; ``after`` is the last (dead_at, task_id)."""
        dead_at, task_id = after if after is not None else (None, None)
        rows = await self._pool.fetch(
            sql.LIST_DEAD_LETTERS, *_dlq_args(None, where, tenant), dead_at, task_id, limit
        )
        return [_dead_letter_view(r) for r in rows]

    async def page_dead_letters(
        self, *, offset: int, limit: int, tenant: str | None = None
    ) -> list[DeadLetterView]:
        """Dead letters ``offset`` to ``offset + limit``, newest first (numbered pages)."""
        rows = await self._pool.fetch(
            sql.PAGE_DEAD_LETTERS, *_dlq_args(None, DlqFilter(), tenant), limit, offset
        )
        return [_dead_letter_view(r) for r in rows]

    async def match_dead_letters(
        self,
        ids: Sequence[uuid.UUID] | None,
        where: DlqFilter,
        *,
        replayable: bool,
        limit: int,
        tenant: str | None = None,
    ) -> tuple[int, list[DlqRef]]:
        """How many dead letters match (only those a replay would take if ``replayable``),
        and the first ``limit`` of them, oldest first. Changes nothing (dry runs)."""
        query = sql.MATCH_DEAD_LETTERS if replayable else sql.MATCH_DEAD_LETTERS_ANY
        rows = await self._pool.fetch(query, *_dlq_args(ids, where, tenant), limit)
        return (int(rows[0]["total"]) if rows else 0), [_dlq_ref(r) for r in rows]

    async def replay_dead_letters(
        self,
        ids: Sequence[uuid.UUID] | None,
        where: DlqFilter,
        limit: int,
        publish: Publisher,
        tenant: str | None = None,
    ) -> list[DlqRef]:
        """Replay up to ``limit`` matching dead letters, oldest first, in one transaction:
        each task is queued with fresh attempts (``first_attempt = attempt = attempt + 1``)
        and its letter deleted; after the commit ``publish`` adds the entries (see
        ``move_due`` for why after). A crash or failed publish in between leaves queued
        tasks without entries, which the watcher's repair re-sends."""
        rows = await self._pool.fetch(
            sql.REPLAY_DEAD_LETTERS, *_dlq_args(ids, where, tenant), limit
        )
        if rows:
            await publish(
                [
                    Ready(
                        id=r["task_id"],
                        attempt=r["attempt"],
                        priority=r["priority"],
                        trace_context=r["trace_context"],
                    )
                    for r in rows
                ]
            )
            if rows[0]["outbox_id"] is not None:
                await self._pool.execute(sql.OUTBOX_DONE, [rows[0]["outbox_id"]])
        return [_dlq_ref(r) for r in rows]

    async def purge_dead_letters(
        self,
        ids: Sequence[uuid.UUID] | None,
        where: DlqFilter,
        limit: int,
        tenant: str | None = None,
    ) -> list[DlqRef]:
        """Delete up to ``limit`` matching dead-letter records, oldest first; the tasks stay
        ``dead`` with their history."""
        rows = await self._pool.fetch(sql.PURGE_DEAD_LETTERS, *_dlq_args(ids, where, tenant), limit)
        return [_dlq_ref(r) for r in rows]
