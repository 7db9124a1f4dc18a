"""Wire and storage models: the HTTP request and response bodies and the stream entry.

msgspec Structs, frozen and keyword-only; new fields always get defaults so old producers
and consumers keep working. Encoders and decoders are built once, here.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

Priority = Literal["critical", "high", "default", "low"]
Status = Literal["scheduled", "queued", "running", "succeeded", "retrying", "dead", "cancelled"]
STATUSES: tuple[str, ...] = (
    "scheduled",
    "queued",
    "running",
    "succeeded",
    "retrying",
    "dead",
    "cancelled",
)
TERMINAL: frozenset[str] = frozenset({"succeeded", "dead", "cancelled"})
CANCELLABLE: frozenset[str] = frozenset({"scheduled", "queued", "retrying"})

TaskType = Annotated[
    str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:\-]+$")
]
IdemKey = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Millis = Annotated[int, msgspec.Meta(ge=0, le=30 * 24 * 3600 * 1000)]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
PositiveMillis = Annotated[int, msgspec.Meta(ge=1, le=24 * 3600 * 1000)]
Attempts = Annotated[int, msgspec.Meta(ge=1, le=100)]


class Backoff(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per-task override of the retry backoff (milliseconds)."""

    base_ms: Millis | None = None
    max_ms: Millis | None = None
    jitter_ms: Millis | None = None


class TaskRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /v1/tasks`` (and each element of a batch)."""

    type: TaskType
    payload: Any = msgspec.field(default_factory=dict)
    priority: Priority = "default"
    idempotency_key: IdemKey | None = None
    run_at: AwareDatetime | None = None
    delay_ms: Millis | None = None
    max_attempts: Attempts | None = None
    backoff: Backoff | None = None
    timeout_ms: PositiveMillis | None = None


class BatchRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /v1/tasks/batch``; elements are validated one by one."""

    tasks: list[Any]


class GoTaskRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Body of the Go scheduler's ``POST /tasks`` (kept for compatibility)."""

    type: TaskType
    priority: Priority = "default"
    payload: Any = msgspec.field(default_factory=dict)
    idempotency_key: IdemKey | None = None
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=99)] | None = None


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The last error of a task: exception type, message and the head of its traceback."""

    type: str
    message: str
    traceback: str = ""


class TaskView(msgspec.Struct, frozen=True, kw_only=True):
    """A task as the API shows it."""

    id: uuid.UUID
    type: str
    priority: str
    status: str
    attempt: int
    max_attempts: int
    payload: Any
    idempotency_key: str | None
    run_at: datetime
    created_at: datetime
    updated_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    timeout_ms: int
    last_error: ErrorInfo | None


class TaskList(msgspec.Struct, frozen=True, kw_only=True):
    tasks: list[TaskView]
    next_cursor: str | None


class ApiError(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    code: str
    message: str
    field: str | None = None


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    error: ApiError


class NewTask(msgspec.Struct, frozen=True, kw_only=True):
    """A validated task, with every default resolved, ready to be inserted."""

    id: uuid.UUID
    type: str
    priority: str
    payload: bytes  # JSON
    status: str  # "queued" or "scheduled"
    max_attempts: int
    retry_base_ms: int
    retry_max_ms: int
    retry_jitter_ms: int
    timeout_ms: int
    idempotency_key: str | None
    request_hash: bytes | None
    run_at: datetime | None  # None: now (the database's clock)
    trace_context: str | None = None


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """One stream entry as read by an executor: the task and the attempt (fencing token)."""

    priority: str
    entry_id: str
    task_id: uuid.UUID
    attempt: int
    trace_context: str | None = None


json_encoder = msgspec.json.Encoder()
canonical_encoder = msgspec.json.Encoder(order="sorted")


def request_hash(request: TaskRequest) -> bytes:
    """A digest of a request's meaning, to tell a replay from a different body."""
    return hashlib.sha256(canonical_encoder.encode(request)).digest()
