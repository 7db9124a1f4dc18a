"""Retry delays: exponential backoff with a cap and random jitter."""

from __future__ import annotations

import random


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
    return delay + jitter
