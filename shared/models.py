"""Wire models: the HTTP request and response bodies (the domain types are in ``domain``).

msgspec Structs, frozen and keyword-only; new fields always get defaults so old producers
and consumers keep working. Encoders and decoders are built once, here.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from taskstream.shared.domain import Priority, Task

TaskType = Annotated[
    str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:\-]+$")
]
# No NUL: Postgres text cannot hold it (the type's own pattern already excludes it).
IdemKey = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern="^[^\x00]+$")]
# Stored in Postgres integer columns: at most 2^31 - 1 ms (24.8 days).
Millis = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
DelayMillis = Annotated[int, msgspec.Meta(ge=0, le=30 * 24 * 3600 * 1000)]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
PositiveMillis = Annotated[int, msgspec.Meta(ge=1, le=24 * 3600 * 1000)]
Attempts = Annotated[int, msgspec.Meta(ge=1, le=100)]


class Backoff(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Per-task override of the retry backoff (milliseconds)."""

    base_ms: Millis | None = None
    max_ms: Millis | None = None
    jitter_ms: Millis | None = None


Status = Literal["scheduled", "queued", "running", "succeeded", "retrying", "dead", "cancelled"]
# What a unique identity is made of besides the type: the priority, the payload, or a dotted
# path into it (``payload.user_id``, ``payload.items.0``).
UniqueField = Annotated[
    str, msgspec.Meta(max_length=200, pattern="^(type|priority|payload(\\.[^.\x00]+)*)$")
]
# A period: a count and a unit, ``500ms``, ``30s``, ``10m``, ``2h``, ``7d``.
Period = Annotated[str, msgspec.Meta(pattern="^[1-9][0-9]{0,5}(ms|s|m|h|d)$")]


class UniqueOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``unique`` option: a task with the same identity (its type, ``key`` and the ``by``
    fields) is not created while another is in one of ``states`` (default: not yet finished,
    which they must include) or within the period ``for`` after that one was submitted."""

    key: IdemKey | None = None
    by: Annotated[list[UniqueField], msgspec.Meta(max_length=20)] = msgspec.field(
        default_factory=list
    )
    states: Annotated[list[Status], msgspec.Meta(max_length=20)] | None = None
    period: Period | None = msgspec.field(default=None, name="for")


class TaskRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /v1/tasks`` (and each element of a batch)."""

    type: TaskType
    payload: Any = msgspec.field(default_factory=dict)
    priority: Priority = "default"
    idempotency_key: IdemKey | None = None
    run_at: AwareDatetime | None = None
    delay_ms: DelayMillis | None = None
    max_attempts: Attempts | None = None
    backoff: Backoff | None = None
    timeout_ms: PositiveMillis | None = None
    unique: UniqueOptions | None = None


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


class TaskList(msgspec.Struct, frozen=True, kw_only=True):
    tasks: list[Task]
    next_cursor: str | None


class ApiError(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    code: str
    message: str
    field: str | None = None


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    error: ApiError


json_encoder = msgspec.json.Encoder()
canonical_encoder = msgspec.json.Encoder(order="sorted")


def request_hash(request: TaskRequest) -> bytes:
    """A digest of a request's meaning, to tell a replay from a different body."""
    return hashlib.sha256(canonical_encoder.encode(request)).digest()
