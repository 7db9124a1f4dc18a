"""Retry policy: exponential backoff with a cap and random jitter, and what a failed attempt
becomes (a retry after its delay, or a dead letter)."""

from __future__ import annotations

import random
import uuid
from typing import Protocol

from taskstream.shared.domain.task import Outcome


class Attempted(Protocol):
    """What the policy needs to know of a task (``ClaimedTask`` or ``TaskState``)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def attempt(self) -> int: ...
    @property
    def attempts_used(self) -> int: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def retry_base_ms(self) -> int: ...
    @property
    def retry_max_ms(self) -> int: ...
    @property
    def retry_jitter_ms(self) -> int: ...


MAX_DELAY_MS = 2**31 - 1  # what the due table's arithmetic takes (Postgres integer)


def retry_delay_ms(
    attempts_used: int,
    *,
    base_ms: int,
    max_ms: int,
    jitter_ms: int,
    rand: random.Random | None = None,
) -> int:
    """Delay before the next attempt after ``attempts_used`` failed ones (1 → ``base_ms``)."""
    exponent = max(0, attempts_used - 1)
    delay = max_ms if exponent >= 40 else min(max_ms, base_ms * (2**exponent))
    jitter = (rand or random).randint(0, jitter_ms) if jitter_ms > 0 else 0
    return min(delay + jitter, MAX_DELAY_MS)


def failure(
    task: Attempted,
    error: bytes,
    outcome: str,
    *,
    retryable: bool = True,
    reason: str = "",
    rand: random.Random | None = None,
) -> Outcome:
    """A failed attempt: a retry after its backoff while attempts remain, else dead."""
    if retryable and task.attempts_used < task.max_attempts:
        delay = retry_delay_ms(
            task.attempts_used,
            base_ms=task.retry_base_ms,
            max_ms=task.retry_max_ms,
            jitter_ms=task.retry_jitter_ms,
            rand=rand,
        )
        return Outcome(
            task_id=task.id,
            attempt=task.attempt,
            kind="retry",
            outcome=outcome,
            error=error,
            delay_ms=delay,
        )
    return Outcome(
        task_id=task.id,
        attempt=task.attempt,
        kind="dead",
        outcome=outcome,
        error=error,
        reason=reason or "attempts_exhausted",
    )
