"""Postgres notifications: one connection that LISTENs, for a whole process.

Two channels carry what the services wait for without polling:

- ``taskstream_done``: tasks that ended (succeeded, dead, cancelled), one notification per
  statement that ended them (``shared.sql._TOLD``), naming up to 200 ids comma-separated, or
  ``*`` when more ended. Ingest's waiters (``GET /v1/tasks/{id}?wait=``) listen to it.
- ``taskstream_outbox``: a transaction of ``taskstream.enqueue`` committed outbox rows; the
  watcher's outbox role listens and publishes them at once.

A notification is sent only on commit and reaches only the connections listening then, so a
listener that reconnects after an outage (the connection broke, Postgres restarted) calls
``on_connect`` once it listens again: its user then looks at everything it waits for, since
notifications sent meanwhile are lost. The loop keeps trying with a backoff from 0.1 s doubling
to 5 s, and sends a ping every ``ping_s`` so a dead connection (a host gone without a reset) is
noticed. Every driver error stays in here (the boundary); ``start`` and ``close`` are wrapped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from taskstream.shared import sql
from taskstream.shared.db.boundary import is_driver_error, wrap_public

log = logging.getLogger(__name__)

DONE_CHANNEL = "taskstream_done"
OUTBOX_CHANNEL = "taskstream_outbox"
ALL = "*"  # a payload on DONE_CHANNEL: more tasks ended than a payload can name
BACKOFF_S = 0.1
BACKOFF_MAX_S = 5.0
PING_S = 5.0


class Listener:
    """``LISTEN`` on ``channels`` over one connection of its own (not from a pool: a pooled
    connection is reset between uses). ``on_notify(channel, payload)`` runs for each
    notification, ``on_connect()`` after each (re)connection, both on the event loop (they
    must not block)."""

    def __init__(
        self,
        url: str,
        channels: Sequence[str],
        on_notify: Callable[[str, str], None],
        on_connect: Callable[[], None] = lambda: None,
        *,
        ping_s: float = PING_S,
    ) -> None:
        self._url = url
        self._channels = list(channels)
        self._on_notify = on_notify
        self._on_connect = on_connect
        self._ping_s = ping_s
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._closing = False
        self._conn: asyncpg.Connection | None = None
        self.connects = 0  # how many times it (re)connected and listened

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    @property
    def backend_pid(self) -> int | None:
        """The server process of the listening connection (tests end it to cut the line)."""
        return self._conn.get_server_pid() if self._conn is not None else None

    async def start(self) -> None:
        """Start listening in the background (returns at once; see ``wait_listening``)."""
        if self._task is None or self._task.done():
            self._closing = False
            self._task = asyncio.get_running_loop().create_task(self._run(), name="listener")

    async def wait_listening(self, timeout_s: float) -> bool:
        """Wait until the connection listens; False if it did not within ``timeout_s``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), timeout_s)
        return self._listening.is_set()

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        failures = 0
        while not self._closing:
            lost = asyncio.Event()
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._url, timeout=10)
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                for channel in self._channels:
                    await conn.add_listener(channel, self._deliver)
                self._conn = conn
                self._listening.set()
                self.connects += 1
                if failures:
                    log.info(
                        "listening again after %d failed tries",
                        failures,
                        extra={"event": "db.listen_recovered"},
                    )
                failures = 0
                self._call(self._on_connect)
                await self._watch(conn, lost)
            except Exception as exc:
                if not is_driver_error(exc):
                    raise
                failures += 1
                log.log(
                    logging.WARNING if failures < 10 else logging.ERROR,
                    "cannot listen for notifications (%d tries): %r",
                    failures,
                    exc,
                    extra={"event": "db.listen_failed"},
                )
            finally:
                self._listening.clear()
                self._conn = None
                if conn is not None:
                    conn.terminate()
            if not self._closing:
                await asyncio.sleep(min(BACKOFF_MAX_S, BACKOFF_S * 2 ** max(0, failures - 1)))

    async def _watch(self, conn: asyncpg.Connection, lost: asyncio.Event) -> None:
        """Until the connection is lost: ping it now and then, so a dead one is noticed."""
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), self._ping_s)
            if not lost.is_set():
                await conn.fetchval(sql.PING, timeout=self._ping_s)
        raise ConnectionError("the listening connection was closed")

    def _deliver(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        self._call(self._on_notify, channel, payload)

    @staticmethod
    def _call(fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # a bug in a callback must not end the listening
            log.exception("a notification callback failed", extra={"event": "db.listen_bug"})


wrap_public(Listener)
