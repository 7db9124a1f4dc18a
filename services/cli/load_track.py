"""Following a load run: which tasks are done (from Postgres or the HTTP API), and progress.

``sweep`` checks the run's ids oldest first and stops at the first chunk where nothing has
finished, so each poll costs about what finished since the last one, however large the run.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TextIO

import aiohttp
import msgspec

from taskstream.shared.db import Database
from taskstream.shared.domain import TERMINAL, Task, TaskTiming
from taskstream.shared.errors import TaskstreamError


class LoadError(TaskstreamError):
    """The load cannot go on (ingest unreachable)."""


class Progress:
    """One status line on stderr: rewritten in place at most four times a second on a
    terminal, else a new line every 5 s."""

    def __init__(
        self, stream: TextIO | None = None, *, clock: Callable[[], float] = time.monotonic
    ):
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._every = 0.25 if self._tty else 5.0
        self._clock = clock
        self._start = clock()
        self._last = -math.inf
        self._shown = False

    def show(self, text: str, *, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._last < self._every:
            return
        self._last = now
        line = f"{now - self._start:6.1f} s  {text}"
        if self._tty:
            self._stream.write("\r\x1b[2K" + line)
            self._shown = True
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def close(self) -> None:
        if self._tty and self._shown:
            self._stream.write("\n")
            self._stream.flush()
            self._shown = False


class Tracker(Protocol):
    """Where the load generator learns how its tasks are doing."""

    chunk: int  # ids per unfinished() call
    poll_s: float

    async def unfinished(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]: ...
    async def timings(self, ids: Sequence[uuid.UUID]) -> list[TaskTiming]: ...


class DbTracker:
    """Polls Postgres directly: one query per chunk of ids."""

    chunk = 5000
    poll_s = 0.2

    def __init__(self, db: Database) -> None:
        self._db = db

    async def unfinished(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        return await self._db.unfinished(ids)

    async def timings(self, ids: Sequence[uuid.UUID]) -> list[TaskTiming]:
        out: list[TaskTiming] = []
        for i in range(0, len(ids), 10_000):
            out += await self._db.timings(ids[i : i + 10_000])
        return out


class HttpTracker:
    """Polls ``GET /v1/tasks/{id}`` (no database access); keeps the last view of each task."""

    chunk = 256
    poll_s = 0.5
    _decode = msgspec.json.Decoder(Task).decode

    def __init__(self, session: aiohttp.ClientSession, url: str, concurrency: int) -> None:
        self._session = session
        self._url = url.rstrip("/")
        self._limit = asyncio.Semaphore(concurrency)
        self._views: dict[uuid.UUID, Task] = {}

    async def _get(self, task_id: uuid.UUID) -> None:
        async with self._limit, self._session.get(f"{self._url}/v1/tasks/{task_id}") as resp:
            if resp.status == 200:
                self._views[task_id] = self._decode(await resp.read())

    async def unfinished(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        await _guard(asyncio.gather(*(self._get(i) for i in ids)), self._url)
        views = [self._views.get(i) for i in ids]
        return {
            i: v.status if v else "unknown" for i, v in zip(ids, views, strict=True) if not _done(v)
        }

    async def timings(self, ids: Sequence[uuid.UUID]) -> list[TaskTiming]:
        missing = [i for i in ids if _done(self._views.get(i)) is False]
        await _guard(asyncio.gather(*(self._get(i) for i in missing)), self._url)
        return [_timing(v) for i in ids if (v := self._views.get(i)) is not None]


def _done(view: Task | None) -> bool:
    return view is not None and view.status in TERMINAL


def _timing(v: Task) -> TaskTiming:
    """A view's timeline; the API shows the final attempt only, so a retried task's first
    start is unknown."""
    first = v.attempt == 1
    return TaskTiming(
        id=v.id,
        type=v.type,
        priority=v.priority,
        status=v.status,
        attempts=v.attempt,
        consumer=None,
        created_at=v.created_at,
        queued_at=v.queued_at if first else v.created_at,
        first_started_at=v.started_at if first else None,
        started_at=v.started_at,
        finished_at=v.finished_at,
        reaped=None,
    )


async def _guard(calls: Any, url: str) -> None:
    """Await ``calls``; an HTTP failure becomes ``LoadError``."""
    try:
        await calls
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise LoadError(f"cannot reach ingest at {url}: {exc!r}") from exc


async def wait_all(
    ids: Sequence[uuid.UUID],
    tracker: Tracker,
    *,
    timeout: float,
    progress: Progress,
    check: Callable[[], None] | None = None,
) -> int:
    """Poll until every task is terminal or ``timeout`` seconds pass (0: never); returns how
    many are still unfinished."""
    deadline = time.monotonic() + timeout if timeout > 0 else math.inf
    pending = list(ids)
    while True:
        if check is not None:
            check()  # e.g. the benchmark's "no service has died"
        pending = await sweep(pending, tracker)
        progress.show(f"finished {len(ids) - len(pending):,}/{len(ids):,}")
        if not pending or time.monotonic() >= deadline:
            return len(pending)
        await asyncio.sleep(tracker.poll_s)


async def sweep(pending: list[uuid.UUID], tracker: Tracker) -> list[uuid.UUID]:
    """``pending`` without the tasks now terminal, checked from the oldest: tasks finish in
    roughly the order they were sent, so the sweep stops at the first chunk where none has
    finished, and each poll costs about what finished since the last one."""
    kept: list[uuid.UUID] = []
    i = 0
    while i < len(pending):
        chunk = pending[i : i + tracker.chunk]
        i += len(chunk)
        left = await tracker.unfinished(chunk)
        kept += [task_id for task_id in chunk if task_id in left]
        if len(left) == len(chunk):
            break
    return kept + pending[i:]
