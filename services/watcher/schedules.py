"""The schedules role: fires each schedule's ticks once they have come, exactly once however
many watchers run.

A pass locks the schedules whose next release (tick plus jitter) has come, or that hold a
buffered tick, with ``FOR UPDATE SKIP LOCKED`` (another watcher takes the others), plans each
(``shared.domain.schedule``: the catch-up window, then the overlap policy) and, in the same
transaction, inserts one run per fired tick, keyed by (schedule, tick), with its task (built
from the schedule's body by ``shared.submit``, as ``POST /v1/tasks`` builds one), cancels the
previous run a ``cancel_previous`` plan names, and moves each schedule to its next tick. The
entries are published after the commit, like every other task's (a crash in between leaves
them to the outbox's repair). A tick is never released before its time and is late by at most
``WATCH_INTERVAL_MS``. "Now" is Postgres's clock, or the injected ``clock`` (tests).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import msgspec

from taskstream.services.watcher.release import Release
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.domain import NewTask, schedule
from taskstream.shared.domain.schedule import Due, Firing, Stored
from taskstream.shared.metrics import Metrics
from taskstream.shared.models import TaskRequest
from taskstream.shared.submit import SubmitError, new_task
from taskstream.shared.supervise import Done, RoleBase

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]


class Fired(Done, kw_only=True):
    enqueued: int = 0
    caught_up: int = 0
    skipped: int = 0
    missed: int = 0
    cancelled: int = 0  # previous runs cancel_previous cancelled


class ScheduleFirer(RoleBase):
    name = "watcher.schedules"

    def __init__(
        self,
        config: Config,
        db: Database,
        release: Release,
        metrics: Metrics,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.interval_s = config.watcher.watch_interval_ms / 1000
        self.config = config
        self._db = db
        self._release = release
        self._metrics = metrics
        self._clock = clock

    async def run_once(self) -> Fired:
        """Fire what has come; ``more`` when the pass stopped at ``SCHEDULE_BATCH``."""
        now = self._clock() if self._clock is not None else None
        fired = await self._db.fire_schedules(
            now, self.config.watcher.schedule_batch, self._decide, self._release.publish
        )
        out = Fired(cancelled=fired.cancelled, more=fired.more)
        for counts in fired.outcomes.values():
            for outcome, n in counts.items():
                setattr(out, outcome, getattr(out, outcome) + n)
                self._metrics.schedule_runs.add(n, {"outcome": outcome})
        for late in fired.lateness_s:
            self._metrics.schedule_lateness_seconds.record(max(0.0, late))
        if out.missed:
            log.warning(
                "%d schedule ticks missed (later than their catch-up window)",
                out.missed,
                extra={"event": "schedule.missed", "schedules": sorted(fired.outcomes)},
            )
        return out

    def _decide(self, due: list[Due], now: dt.datetime) -> list[Firing]:
        """Plan every locked schedule (called inside the pass's transaction); at most
        ``SCHEDULE_BATCH`` ticks are looked at in all (the rest wait for the next pass)."""
        left = self.config.watcher.schedule_batch
        firings = []
        for d in due:
            s = d.schedule
            plan = schedule.plan(
                s.name,
                s.spec,
                next_tick=s.next_tick,
                buffered_for=s.buffered_for,
                previous=d.previous,
                now=now,
                grace_ms=self.config.watcher.schedule_grace_ms,
                limit=left,
            )
            tasks = self._tasks(s, len(plan.fires))
            if tasks is None:  # a body that no longer builds: its ticks make nothing
                plan.skipped += len(plan.fires)
                plan.fires, plan.cancel_previous, tasks = [], False, []
            left = max(0, left - plan.looked)
            cancel = d.last_task if plan.cancel_previous else None
            firings.append(Firing(name=s.name, plan=plan, tasks=tasks, cancel=cancel))
        return firings

    def _tasks(self, s: Stored, n: int) -> list[NewTask] | None:
        if n == 0:
            return []
        try:
            req = msgspec.json.decode(s.task, type=TaskRequest)
            return [new_task(req, self.config.tasks) for _ in range(n)]
        except (msgspec.ValidationError, SubmitError) as exc:
            log.error(
                "schedule %s: its task body does not build (%s); its ticks are skipped",
                s.name,
                exc,
                extra={"event": "schedule.bad_task", "schedule": s.name},
            )
            return None
