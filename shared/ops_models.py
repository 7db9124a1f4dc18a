"""What the operator views show: the bodies of the ops API routes and of the CLI's ``--json``.

The CLI prints exactly the JSON the matching HTTP route returns, so scripts can use either.
msgspec Structs, frozen and keyword-only, like every other model.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from taskstream.shared.domain import ErrorInfo, Priority, Task
from taskstream.shared.models import AwareDatetime

# Most task ids one replay or purge request may name.
MAX_IDS = 1000


class QueueStats(msgspec.Struct, frozen=True, kw_only=True):
    """One priority's stream, its consumer group, and what Postgres holds for it.

    ``lag`` is the backlog not yet delivered to the group: XINFO GROUPS ``lag`` when Redis
    reports it (``lag_source`` ``xinfo``, Redis ≥ 7), else the entries after the group's
    ``last-delivered-id`` counted with XRANGE (``counted``; ``counted_capped`` when the count
    stopped at its cap and is a lower bound). Ages are by Redis's clock from the entry ids'
    timestamps: ``oldest_pending_age_ms`` is how long ago the oldest unacknowledged entry was
    added to the stream (its wait plus its run so far), ``oldest_pending_idle_ms`` its XPENDING
    idle time (since its last delivery or lease extension), ``oldest_undelivered_age_ms`` how
    long the first entry not yet delivered has waited.
    """

    priority: str
    exists: bool  # the stream and its consumer group exist
    length: int
    lag: int | None
    lag_source: str
    pending: int
    consumers: int
    oldest_pending_age_ms: int | None
    oldest_pending_idle_ms: int | None
    oldest_undelivered_age_ms: int | None
    retries_waiting: int  # due rows of kind retry (Postgres)
    delayed_waiting: int  # due rows of kind delayed (Postgres)
    dead_letters: int  # Postgres
    paused: bool = False  # executors start none of its tasks (queue_pauses)
    paused_note: str | None = None


class PausedType(msgspec.Struct, frozen=True, kw_only=True):
    """A paused task type: its tasks wait (queued, no attempt used); ``parked`` of them were
    handed to an executor and set aside until the resume."""

    type: str
    note: str | None
    paused_at: datetime
    parked: int


class Queues(msgspec.Struct, frozen=True, kw_only=True):
    queues: list[QueueStats]
    paused_types: list[PausedType] = msgspec.field(default_factory=list)


class TaskSummary(msgspec.Struct, frozen=True, kw_only=True):
    """The few columns of a task the pending view joins to its entries."""

    id: uuid.UUID
    type: str
    status: str
    attempt: int
    first_attempt: int
    created_at: datetime
    age_ms: int  # by the database's clock
    tenant: str = "default"


class PendingView(msgspec.Struct, frozen=True, kw_only=True):
    """One pending (delivered, unacknowledged) entry, joined with its task.

    ``attempt`` is the entry's fencing token, ``task_attempt`` the task's current one. The
    entry is ``stale`` when its task is gone, has moved to a newer attempt, or is no longer
    queued or running: a redelivery would be dropped by fencing. Task fields are null when
    the entry was deleted from the stream or does not decode.
    """

    priority: str
    entry_id: str
    consumer: str
    idle_ms: int
    deliveries: int
    entry_age_ms: int
    task_id: uuid.UUID | None
    attempt: int | None
    type: str | None
    status: str | None
    task_attempt: int | None
    task_age_ms: int | None
    stale: bool


class PendingList(msgspec.Struct, frozen=True, kw_only=True):
    entries: list[PendingView]


class AttemptView(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt of a task. ``outcome`` is the history label (``failed``, ``timeout``,
    ``reclaimed``…) or, for the latest attempt read from the task row, the task's status."""

    attempt: int
    outcome: str
    consumer: str | None
    started_at: datetime | None
    finished_at: datetime | None
    error: ErrorInfo | None


class DeadLetterView(msgspec.Struct, frozen=True, kw_only=True):
    """A dead letter: the task, the attempt it died on, why, and its last error.
    ``attempts`` counts the attempts it was given (fresh after each replay)."""

    task_id: uuid.UUID
    priority: str
    type: str
    attempt: int
    attempts: int
    reason: str
    error: ErrorInfo | None
    dead_at: datetime
    created_at: datetime


class DeadLetterPage(msgspec.Struct, frozen=True, kw_only=True):
    dead_letters: list[DeadLetterView]
    next_cursor: str | None


class TaskRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A task row with the columns the public view leaves out, its failed attempts and its
    dead letter: one consistent read (``Database.task_record``)."""

    task: Task
    first_attempt: int
    consumer: str | None
    entry_id: str | None
    attempts: list[AttemptView]
    dead_letter: DeadLetterView | None


class TaskHistory(msgspec.Struct, frozen=True, kw_only=True):
    """Everything known about one task.

    ``attempts`` are the attempts that did not succeed (task_attempts), oldest first;
    ``latest`` is the task's current attempt as the row records it, when the history has no
    entry for it (it succeeded, is running, or is waiting to run). ``attempts_used`` counts
    from ``first_attempt`` (a replay from the dead letters starts it afresh). ``pending`` is
    its current stream entry if a consumer holds it unacknowledged.
    """

    task: Task
    first_attempt: int
    attempts_used: int
    attempts: list[AttemptView]
    latest: AttemptView | None
    dead_letter: DeadLetterView | None
    pending: PendingView | None


class DlqFilter(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which dead letters: every given field must match. ``error`` is a case-insensitive
    substring of the error's type or message; ``since`` is inclusive, ``until`` exclusive
    (on the time the task died)."""

    priority: Priority | None = None
    type: str | None = None
    reason: str | None = None
    error: str | None = None
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, f) is None for f in self.__struct_fields__)


TaskIds = Annotated[list[uuid.UUID], msgspec.Meta(min_length=1, max_length=MAX_IDS)]


class FailedJobs(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /failedJobs``: one numbered page of dead letters, newest first."""

    jobs: list[DeadLetterView]
    page: int
    limit: int
    has_more: bool


class DlqSelection(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Exactly one of: some task ids, a non-empty filter, or every dead letter."""

    ids: TaskIds | None = None
    filter: DlqFilter | None = None
    all: bool = False


class ReplayRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /v1/dlq/replay``: a selection, and ``dry_run`` (default false: the API
    acts; the CLI is the one that shows a dry run first)."""

    ids: TaskIds | None = None
    filter: DlqFilter | None = None
    all: bool = False
    dry_run: bool = False

    def selection(self) -> DlqSelection:
        return DlqSelection(ids=self.ids, filter=self.filter, all=self.all)


class DlqRef(msgspec.Struct, frozen=True, kw_only=True):
    """A dead letter replayed or purged (or that would be, in a dry run)."""

    task_id: uuid.UUID
    priority: str
    type: str
    reason: str
    dead_at: datetime


class DlqResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a replay or purge did (or would do). ``tasks`` lists the first ``MAX_IDS`` of
    them, oldest death first (``truncated`` when there were more); ``missing`` names the
    requested ids that were not in the dead letters."""

    action: str  # "replay" or "purge"
    dry_run: bool
    count: int
    tasks: list[DlqRef]
    truncated: bool
    missing: list[uuid.UUID]
