"""Wire models of schedules and queue pauses: the request bodies of their API routes (and the
entries of a ``taskstream schedules apply`` file), and what the routes and the CLI's ``--json``
show. msgspec Structs, frozen and keyword-only; new fields always get defaults.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

import msgspec

from taskstream.shared.domain import Priority
from taskstream.shared.domain.schedule import NAME_PATTERN
from taskstream.shared.models import (
    Attempts,
    AwareDatetime,
    Backoff,
    PositiveMillis,
    TaskType,
)

ScheduleName = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NAME_PATTERN)]
Note = Annotated[str, msgspec.Meta(max_length=1000, pattern="^[^\x00]*$")]
CronText = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
DurationText = Annotated[str, msgspec.Meta(min_length=1, max_length=50)]
ZoneText = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Overlap = Literal["skip", "buffer_one", "allow", "cancel_previous"]


class ScheduleTask(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The task a schedule makes at each tick: a ``POST /v1/tasks`` body, less what the tick
    decides (no ``idempotency_key``: the tick is the run's identity; no ``run_at`` or
    ``delay_ms``: the tick and its jitter are the time)."""

    type: TaskType
    payload: Any = msgspec.field(default_factory=dict)
    priority: Priority = "default"
    max_attempts: Attempts | None = None
    backoff: Backoff | None = None
    timeout_ms: PositiveMillis | None = None


class ScheduleRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of ``PUT /v1/schedules/{name}``: ``cron`` (five fields, or a macro such as
    ``@daily``) read in ``timezone``, or ``every`` (a duration, exact in UTC); durations are
    written ``500ms``, ``30s``, ``5m``, ``1h``, ``1d`` or sums like ``1h30m``. ``paused`` and
    ``note`` left out keep what an existing schedule has."""

    task: ScheduleTask
    cron: CronText | None = None
    every: DurationText | None = None
    timezone: ZoneText = "UTC"
    overlap: Overlap = "skip"
    catchup: DurationText = "1h"
    jitter: DurationText = "0s"
    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = None
    paused: bool | None = None
    note: Note | None = None


class NoteRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of the pause and resume routes (optional)."""

    note: Note | None = None


class RunView(msgspec.Struct, frozen=True, kw_only=True):
    """A tick that made a task; ``status`` is the task's (null: deleted by retention)."""

    scheduled_for: dt.datetime
    outcome: str  # enqueued | caught_up | triggered
    task_id: uuid.UUID
    status: str | None
    created_at: dt.datetime


class ScheduleCounts(msgspec.Struct, frozen=True, kw_only=True):
    """Ticks by what became of them, since the schedule was created."""

    enqueued: int
    caught_up: int
    skipped: int
    missed: int
    triggered: int


class ScheduleView(msgspec.Struct, frozen=True, kw_only=True):
    """A schedule as the API and ``taskstream schedules show`` see it. ``next_runs``: the
    next scheduled times (UTC, before jitter; empty while paused or once ended); ``runs``:
    the latest runs, newest first (``GET /v1/schedules/{name}`` only); ``change``: what a
    PUT or an apply did (``created``, ``updated``, ``unchanged``)."""

    name: str
    state: str  # active | paused | ended
    cron: str | None
    every: str | None
    timezone: str
    task: Any  # a ScheduleTask
    overlap: str
    catchup: str
    jitter: str
    start_at: dt.datetime | None
    end_at: dt.datetime | None
    paused: bool
    note: str | None
    paused_at: dt.datetime | None
    next_runs: list[dt.datetime]
    buffered_for: dt.datetime | None
    last_run: RunView | None
    counts: ScheduleCounts
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    runs: list[RunView] = msgspec.field(default_factory=list)
    change: str | None = None


class ScheduleList(msgspec.Struct, frozen=True, kw_only=True):
    schedules: list[ScheduleView]


class TriggerResult(msgspec.Struct, frozen=True, kw_only=True):
    """A run made by hand (``POST …/trigger``): its tick is the moment of the trigger."""

    schedule: str
    scheduled_for: dt.datetime
    task_id: uuid.UUID
    status: str


class Deleted(msgspec.Struct, frozen=True, kw_only=True):
    deleted: str


class ApplyResult(msgspec.Struct, frozen=True, kw_only=True):
    """What ``taskstream schedules apply`` did (or, as a dry run, would do), by name."""

    created: list[str]
    updated: list[str]
    unchanged: list[str]
    deleted: list[str]
    dry_run: bool = False


class QueuePauseRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /v1/queues/pause`` and ``…/resume``: exactly one of ``priority`` and
    ``type``."""

    priority: Priority | None = None
    type: TaskType | None = None
    note: Note | None = None


class PauseView(msgspec.Struct, frozen=True, kw_only=True):
    """A queue's pause state: ``kind`` ``priority`` or ``type``; ``parked``: tasks of a paused
    type set aside, waiting for its resume."""

    kind: str
    name: str
    paused: bool
    note: str | None = None
    paused_at: dt.datetime | None = None
    parked: int = 0
    changed: bool = False  # whether this call paused or resumed it


class PauseList(msgspec.Struct, frozen=True, kw_only=True):
    pauses: list[PauseView]
