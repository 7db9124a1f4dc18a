"""The threads plain (non-async) handlers run in: a pool of the executor's own.

asyncio's default pool has min(32, CPUs + 4) threads (6 on two cores) for 64 handler slots, so
sync handlers timed out waiting for a thread, and its threads were joined at exit. Here a
thread is started whenever none is idle, so every slot gets one at once, and the threads are
daemons: a handler that hangs cannot block the process from exiting.

A timed-out sync handler cannot be stopped (Python has no way to kill a thread): its attempt
is recorded as timed out and retried; the thread runs on until the function returns, its
result is dropped (fenced: the attempt was already settled) and a warning is logged. Handlers
that may run long should watch ``ctx.remaining()``.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

_Work = tuple[Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, asyncio.Future[Any]]


IDLE_S = 30.0  # an idle thread ends after this long without work


class SyncPool:
    def __init__(self, name: str = "handler") -> None:
        self._name = name
        self._work: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for work and not yet promised any
        self._threads = 0

    @property
    def threads(self) -> int:
        return self._threads

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in a pool thread; cancelling the caller abandons the result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            if self._idle > 0:
                self._idle -= 1  # that thread is promised this work
            else:
                self._threads += 1
                threading.Thread(
                    target=self._worker, name=f"{self._name}-{self._threads}", daemon=True
                ).start()
        self._work.put((fn, args, loop, future))
        return await future

    def _worker(self) -> None:
        while True:
            try:
                fn, args, loop, future = self._work.get(timeout=IDLE_S)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # nobody promised this thread work: end it
                        self._idle -= 1
                        self._threads -= 1
                        return
                continue
            try:
                result: Any = fn(*args)
                error: BaseException | None = None
            except Exception as exc:
                result, error = None, exc
            except BaseException as exc:  # SystemExit, KeyboardInterrupt…: a failed attempt
                result, error = None, HandlerExit(exc)
            if future.done():  # the attempt timed out and was settled: drop this
                log.warning(
                    "a timed-out sync handler returned late; its result was dropped",
                    extra={"event": "executor.sync_late"},
                )
            else:
                try:
                    loop.call_soon_threadsafe(_settle, future, result, error)
                except RuntimeError:  # the loop is closed: the process is exiting
                    return
            with self._lock:
                self._idle += 1


class HandlerExit(Exception):
    """A handler raised a ``BaseException`` that is not an ``Exception`` (``SystemExit``,
    ``KeyboardInterrupt``, ``GeneratorExit``…): a failed attempt like any other."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(f"the handler raised {type(exc).__name__}: {exc}")
        self.original = exc


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
