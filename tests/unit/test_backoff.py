"""Retry delays: exponential from the base, capped, plus bounded jitter; and what a failed
attempt becomes."""

from __future__ import annotations

import random
import uuid

from taskstream.shared.domain import ClaimedTask, failure, retry_delay_ms


def test_delay_doubles_from_the_base_and_stops_at_the_cap() -> None:
    delays = [retry_delay_ms(n, base_ms=500, max_ms=30_000, jitter_ms=0) for n in range(1, 9)]
    assert delays == [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]
    assert retry_delay_ms(10_000, base_ms=500, max_ms=30_000, jitter_ms=0) == 30_000


def test_jitter_stays_within_its_bound() -> None:
    rand = random.Random(1)
    got = {
        retry_delay_ms(1, base_ms=500, max_ms=30_000, jitter_ms=500, rand=rand) for _ in range(500)
    }
    assert min(got) >= 500 and max(got) <= 1000 and len(got) > 100


def task(attempt: int, first: int = 1, max_attempts: int = 3) -> ClaimedTask:
    return ClaimedTask(
        uuid.uuid4(),
        attempt,
        "t",
        "default",
        "{}",
        1000,
        max_attempts,
        first,
        100,
        1000,
        0,
        None,
        None,  # type: ignore[arg-type]
    )


def test_a_failure_retries_while_attempts_remain_then_dies() -> None:
    assert failure(task(1), b"{}", "failed").kind == "retry"
    assert failure(task(2), b"{}", "failed").delay_ms == 200
    last = failure(task(3), b"{}", "failed")
    assert (last.kind, last.reason) == ("dead", "attempts_exhausted")
    # After a replay the budget counts from first_attempt: attempt 5 is the second of three.
    assert failure(task(5, first=4), b"{}", "failed").kind == "retry"


def test_a_non_retryable_failure_dies_at_once() -> None:
    out = failure(task(1), b"{}", "failed", retryable=False, reason="non_retryable")
    assert (out.kind, out.reason) == ("dead", "non_retryable")
