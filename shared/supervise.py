"""The one shape of every background role, and the one loop that runs them.

A role (the watcher's due mover and repair, the janitor's reclaim, orphans, trimming, consumer
pruning and gauges, and the maintenance jobs that come later) is a small class with a name, an
interval, an optional ``start()`` and a ``run_once()`` that does one pass and returns what it
did (a ``Done``: counts, and ``more`` when it stopped at its batch limit and should go again at
once). Tests call ``run_once()`` directly; services hand their roles to ``supervise``.

``supervise`` runs each role in a task of its own: pass, then wait its interval (or go again at
once while there is ``more``). A store that fails (``StoreError``: down, lost data, refused)
costs the pass, never the service: the role waits with a backoff that doubles up to
``BACKOFF_MAX_S`` and tries again; ``start()`` is retried the same way, so a service started
while a store is down waits for it. The stop event ends every wait at once; a pass in progress
is finished (each is one transaction, then its publish). Any other exception is a bug and
takes the service down, so its orchestrator restarts it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

import msgspec

from taskstream.shared.errors import StoreError

log = logging.getLogger(__name__)

BACKOFF_S = 0.1  # the first wait after a failed pass
BACKOFF_MAX_S = 5.0  # the longest


class Done(msgspec.Struct, kw_only=True):
    """What one pass did. Roles subclass it with their counts; ``more``: the pass stopped at
    its batch limit, run again at once."""

    more: bool = False


class Role(Protocol):
    """One background job: ``run_once()`` does a pass; ``supervise`` repeats it."""

    name: str

    @property
    def interval_s(self) -> float: ...

    async def start(self) -> None: ...

    async def run_once(self) -> Done: ...


class RoleBase:
    """What most roles share: an interval set at construction, nothing to prepare, and a
    ``wakeup`` event that ends the wait for the next pass early (``wake()``)."""

    name = "role"
    interval_s = 1.0

    def wake(self) -> None:
        """Run the next pass now rather than after the interval."""
        self.wakeup.set()

    @property
    def wakeup(self) -> asyncio.Event:
        event: asyncio.Event | None = self.__dict__.get("_wakeup")
        if event is None:
            event = self.__dict__["_wakeup"] = asyncio.Event()
        return event

    async def start(self) -> None:
        """Nothing to prepare by default (a role that needs groups or state overrides it)."""


def backoff_s(failures: int) -> float:
    """How long to wait after ``failures`` failed passes in a row."""
    return min(BACKOFF_MAX_S, BACKOFF_S * 2.0 ** max(0, failures - 1))


async def pause(stop: asyncio.Event, seconds: float, wake: asyncio.Event | None = None) -> bool:
    """Wait ``seconds``, or until ``stop`` (or ``wake``) is set; True if stopped."""
    if seconds > 0 and not stop.is_set():
        waits = [asyncio.ensure_future(stop.wait())]
        if wake is not None:
            waits.append(asyncio.ensure_future(wake.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
    if wake is not None:
        wake.clear()
    return stop.is_set()


async def supervise(
    roles: Sequence[Role],
    stop: asyncio.Event,
    *,
    on_failure: Callable[[Role, StoreError], None] | None = None,
) -> None:
    """Run every role until ``stop`` is set (see the module's docstring)."""
    async with asyncio.TaskGroup() as tg:
        for role in roles:
            tg.create_task(_run(role, stop, on_failure), name=role.name)


async def _run(
    role: Role, stop: asyncio.Event, on_failure: Callable[[Role, StoreError], None] | None
) -> None:
    started = False
    failures = 0
    while not stop.is_set():
        try:
            if not started:
                await role.start()
                started = True
            done = await role.run_once()
        except StoreError as exc:
            failures += 1
            if on_failure is not None:
                on_failure(role, exc)
            wait = backoff_s(failures)
            level = logging.WARNING if failures < 10 else logging.ERROR
            log.log(
                level,
                "%s: %s failed (%d in a row), again in %.1f s: %s",
                role.name,
                "start" if not started else "pass",
                failures,
                wait,
                exc,
                extra={"event": "role.failed", "role": role.name},
            )
            await pause(stop, wait)
            continue
        if failures:
            log.info(
                "%s: recovered after %d failed passes",
                role.name,
                failures,
                extra={"event": "role.recovered", "role": role.name},
            )
            failures = 0
        if not done.more:
            await pause(stop, role.interval_s, getattr(role, "wakeup", None))
