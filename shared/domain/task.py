"""A task and its states, as every layer sees it: no I/O here.

``Task`` is a task as Postgres records it (and as the API shows it); ``NewTask`` one validated
and ready to insert; ``Delivery`` one stream entry (a task's attempt); ``ClaimedTask`` what an
executor holds once its claim committed; ``TaskState`` what the janitor decides on;
``Outcome`` how one attempt ended; ``Ready`` a task made ready to deliver.
msgspec Structs, frozen; new fields always get defaults.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import msgspec

PRIORITIES: tuple[str, ...] = ("critical", "high", "default", "low")
Priority = Literal["critical", "high", "default", "low"]

STATUSES: tuple[str, ...] = (
    "scheduled",
    "queued",
    "running",
    "succeeded",
    "retrying",
    "dead",
    "cancelled",
    "waiting",  # a workflow step whose parents have not all ended (last: unique.py's bits)
)
TERMINAL: frozenset[str] = frozenset({"succeeded", "dead", "cancelled"})


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The last error of a task: exception type, message and the head of its traceback."""

    type: str
    message: str
    traceback: str = ""


class Task(msgspec.Struct, frozen=True, kw_only=True):
    """A task as Postgres records it, and as the API shows it. A task a schedule made names
    it and its tick (``schedule``, ``scheduled_for``); for the others both are null."""

    id: uuid.UUID
    type: str
    priority: str
    status: str
    attempt: int
    max_attempts: int
    payload: Any
    idempotency_key: str | None
    run_at: dt.datetime
    created_at: dt.datetime
    updated_at: dt.datetime
    queued_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    timeout_ms: int
    last_error: ErrorInfo | None
    tenant: str = "default"
    result: Any = None  # what the handler returned (JSON), once it succeeded; None: nothing
    schedule: str | None = None
    scheduled_for: dt.datetime | None = None
    workflow_id: uuid.UUID | None = None  # a workflow step: its workflow


class NewTask(msgspec.Struct, frozen=True, kw_only=True):
    """A validated task, with every default resolved, ready to be inserted. Whether it is
    ``queued`` or ``scheduled`` is decided by Postgres at the insert, on its own clock: a
    ``run_at`` or ``now() + delay_ms`` ahead of ``now()`` is scheduled."""

    id: uuid.UUID
    type: str
    priority: str
    payload: bytes  # JSON
    max_attempts: int
    retry_base_ms: int
    retry_max_ms: int
    retry_jitter_ms: int
    timeout_ms: int
    idempotency_key: str | None
    request_hash: bytes | None
    run_at: dt.datetime | None  # None: now, or ``delay_ms`` from now (the database's clock)
    trace_context: str | None = None
    delay_ms: int | None = None  # added to Postgres's now(); scheduled if that is ahead
    tenant: str = "default"  # from the credential; never changes
    # A unique task (the `unique` option): the hash of its identity, the statuses it holds it
    # in (a bitmask, see ``domain.unique``) and how long it holds it regardless (ms).
    unique_hash: bytes | None = None
    unique_states: int | None = None
    unique_for_ms: int | None = None


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """One stream entry as read by an executor: the task and the attempt (fencing token)."""

    priority: str
    entry_id: str
    task_id: uuid.UUID
    attempt: int
    trace_context: str | None = None
    tenant: str | None = None  # set when the entry counts toward its tenant's fair share


class ClaimedTask(msgspec.Struct, frozen=True):
    """A task an executor now holds (status running, this attempt). Positional, in the
    column order of the CLAIM queries' RETURNING lists (built once per task on a hot path)."""

    id: uuid.UUID
    attempt: int
    type: str
    priority: str
    payload: str  # JSON text
    timeout_ms: int
    max_attempts: int
    first_attempt: int
    retry_base_ms: int
    retry_max_ms: int
    retry_jitter_ms: int
    queued_at: dt.datetime | None
    started_at: dt.datetime
    unique_states: int | None = None  # set for a unique task: its success releases a claim
    workflow_id: uuid.UUID | None = None  # set for a workflow step: it gets its parents' results

    @property
    def attempts_used(self) -> int:
        return self.attempt - self.first_attempt + 1


class TaskState(msgspec.Struct, frozen=True, kw_only=True):
    """Where a task stands, for the janitor's decisions."""

    id: uuid.UUID
    attempt: int
    status: str
    entry_id: str | None
    type: str
    priority: str
    consumer: str | None
    first_attempt: int
    max_attempts: int
    retry_base_ms: int
    retry_max_ms: int
    retry_jitter_ms: int

    @property
    def attempts_used(self) -> int:
        return self.attempt - self.first_attempt + 1


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """How one attempt ended, for ``Database.complete``.

    ``kind`` is ``succeeded``, ``retry``, ``dead`` or ``snooze`` (``committed`` and
    ``fenced``: an exactly-once handler's transaction already settled it); ``outcome`` is the
    history label (``failed``, ``timeout``, ``dead``, …); ``error`` is JSON of ``ErrorInfo``;
    ``delay_ms`` the wait before a retry or after a snooze. A success may carry the handler's
    ``result`` (JSON) and says whether the task is ``unique`` (its identity is released).
    """

    task_id: uuid.UUID
    attempt: int
    kind: str
    outcome: str = "failed"
    error: bytes | None = None
    delay_ms: int = 0
    reason: str = ""
    result: bytes | None = None
    unique: bool = False


class Ready(msgspec.Struct, frozen=True, kw_only=True):
    """A task made ready to deliver (by the watcher): what its stream entry carries."""

    id: uuid.UUID
    attempt: int
    priority: str
    trace_context: str | None = None
    late_s: float = 0.0
    outbox_id: int | None = None  # the outbox row to delete once its entries are published


# Publishes what a mover committed (called after the commit, see ``Database.move_due``).
Publisher = Callable[[list[Ready]], Awaitable[object]]


class InsertResult(msgspec.Struct, frozen=True, kw_only=True):
    """What an insert did: the rows it created (by id), and for each requested task not
    created because its idempotency key was taken (by the requested id), the task holding the
    key and whether that task's request digest matches this one's; ``rejected`` names the
    tasks Postgres refused (bad data that got past validation), each with why; ``duplicates``
    the unique tasks not created because another task holds their identity (by the requested
    id: that task)."""

    inserted: dict[uuid.UUID, Task]
    existing: dict[uuid.UUID, tuple[Task, bool]]
    rejected: dict[uuid.UUID, str] = msgspec.field(default_factory=dict)  # the store refused it
    outbox_ids: list[int] = msgspec.field(default_factory=list)  # see migrations/0005
    duplicates: dict[uuid.UUID, Task] = msgspec.field(default_factory=dict)


class Enqueued(msgspec.Struct, frozen=True, kw_only=True):
    """What ``taskstream.enqueue`` did: the task's id and status; ``created`` when this call
    made it (else its idempotency key or, with ``duplicate``, its unique identity was held by
    that existing task)."""

    id: uuid.UUID
    status: str
    created: bool
    duplicate: bool = False


class TaskTiming(msgspec.Struct, frozen=True, kw_only=True):
    """One task's timeline, as the load generator reports it (database clock)."""

    id: uuid.UUID
    type: str
    priority: str
    status: str
    attempts: int  # attempts used, the final one included
    consumer: str | None  # the executor of the final attempt
    created_at: dt.datetime
    queued_at: dt.datetime | None  # when the first attempt was queued
    first_started_at: dt.datetime | None  # when the first attempt started
    started_at: dt.datetime | None  # when the final attempt started
    finished_at: dt.datetime | None
    reaped: int | None = 0  # attempts reclaimed after the visibility timeout (None: unknown)
