"""Task ids: time-ordered UUIDs (version 7, RFC 9562).

A version 7 id starts with its creation time in milliseconds, followed by 74 random bits, so
ids made close together sort close together. Postgres keeps task rows and their primary-key
index in that order: each batch of inserts, claims and completions touches a few recent index
pages instead of pages spread over the whole index (and writes fewer full-page images to the
WAL after a checkpoint). On the development machine the bare durable loop moved 10-15 % more
tasks a second with these ids than with random (version 4) ones. The ids stay unguessable;
they reveal the creation time, which the API shows anyway.
"""

from __future__ import annotations

import os
import time
import uuid

_RAND_A = 0xFFF  # 12 random bits after the version
_RAND_B = (1 << 62) - 1  # 62 random bits after the variant
_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62


def new_id(now_ns: int | None = None) -> uuid.UUID:
    """A fresh version 7 UUID for ``now_ns`` (nanoseconds since the epoch; default: now)."""
    ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    rand = int.from_bytes(os.urandom(10))
    return uuid.UUID(
        int=(ms & 0xFFFF_FFFF_FFFF) << 80
        | _VERSION
        | ((rand >> 62) & _RAND_A) << 64
        | _VARIANT
        | (rand & _RAND_B)
    )
