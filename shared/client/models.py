"""What the client sends and gets back: ``Task`` as the API shows it, the submit options, the
retry policy. msgspec Structs decoded straight from the API's JSON; fields the API adds later
are ignored and fields it does not send (``result`` before results existed) take defaults, so
a client and a server of neighbouring versions understand each other."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Mapping
from typing import Any, TypedDict

import msgspec

from taskstream.shared.domain import TERMINAL, ErrorInfo, Priority
from taskstream.shared.ops_models import (
    DeadLetterView,
    DlqRef,
    DlqResult,
    PendingList,
    PendingView,
    Queues,
    QueueStats,
)

# Re-exported under the names a client user reads them by.
DeadLetter = DeadLetterView
__all__ = [
    "DeadLetter",
    "DlqRef",
    "DlqResult",
    "ErrorInfo",
    "PendingList",
    "PendingView",
    "QueueStats",
    "Queues",
    "RetryPolicy",
    "SubmitOptions",
    "Task",
]


class Task(msgspec.Struct, frozen=True, kw_only=True):
    """A task as ``GET /v1/tasks/{id}`` shows it.

    ``attempt`` is the fencing token (it grows with every delivery, reclaims included) and
    ``max_attempts`` how many runs it is given; ``last_error`` is the latest failure (type,
    message, traceback head); ``result`` what its handler returned (None until it succeeded,
    or when the server does not store results); ``duplicate`` is true when a submit found an
    existing task under the same unique key instead of creating one."""

    id: uuid.UUID
    type: str
    status: str
    priority: str = "default"
    payload: Any = None
    result: Any = None
    attempt: int = 1
    max_attempts: int = 0
    idempotency_key: str | None = None
    run_at: dt.datetime | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    queued_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    timeout_ms: int = 0
    last_error: ErrorInfo | None = None
    duplicate: bool = False

    @property
    def done(self) -> bool:
        """The task has ended: succeeded, dead or cancelled."""
        return self.status in TERMINAL

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


class Backoff(TypedDict, total=False):
    """A per-task retry backoff (milliseconds)."""

    base_ms: int
    max_ms: int
    jitter_ms: int


class SubmitOptions(TypedDict, total=False):
    """The options of a submit, as the API names them (``POST /v1/tasks``).

    ``idempotency_key``: the client makes one (a uuid) when none is given, so its own retries
    never create a second task; give your own to make a submit safe across your process's
    retries too. ``run_at`` (an aware datetime) or ``delay_ms``, not both. ``unique``: business
    dedup (``{"key"?, "by"?, "states"?, "for"?}``) on servers that support it."""

    priority: Priority
    idempotency_key: str
    run_at: dt.datetime
    delay_ms: int
    max_attempts: int
    backoff: Backoff | Mapping[str, int]
    timeout_ms: int
    unique: Mapping[str, Any]


OPTION_NAMES: frozenset[str] = frozenset(SubmitOptions.__annotations__)


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How the client retries a request that got no answer or a 502/503/504.

    ``retries`` more tries after the first, waiting ``base_s`` doubling up to ``max_s``
    (full jitter, at least the ``Retry-After`` the API sent, capped at ``max_s``). Submits are
    retried even when the request may have reached the API, since they carry an idempotency
    key; other writes only when it surely did not (the connection was refused)."""

    retries: int = 5
    base_s: float = 0.2
    max_s: float = 3.0

    def delay(self, retry: int, retry_after: float | None, rand: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first)."""
        ceiling = min(self.max_s, self.base_s * 2.0**retry)
        wait = ceiling / 2 + rand.random() * ceiling / 2
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_s))
        return wait
