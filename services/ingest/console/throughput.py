"""Throughput for the console's overview: the streams' own counters (entries added to each
stream, entries read by the executors' group), sampled every ``CONSOLE_SAMPLE_MS`` by ingest
and turned into per-minute rates.

Redis keeps the counters (≥ 7), so every ingest replica computes the same rates and nothing
is counted on the hot path: one pipelined round trip per sample, the last 15 minutes kept in
memory. A store outage costs its samples, never the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque

import msgspec

from taskstream.shared.domain import PRIORITIES
from taskstream.shared.errors import StoreError
from taskstream.shared.streams import Streams

log = logging.getLogger(__name__)

KEEP_S = 15 * 60


class Sample(msgspec.Struct, frozen=True):
    at: float  # seconds since the epoch
    added: dict[str, int | None]
    read: dict[str, int | None]


class Minute(msgspec.Struct, frozen=True, kw_only=True):
    """Entries added and delivered during one minute (UTC), all priorities together and by
    priority; ``covered_s`` is how much of the minute the samples span."""

    start: float
    added: int
    delivered: int
    delivered_by_priority: dict[str, int]
    covered_s: float


class Throughput:
    """Samples of the streams' counters, and the rates they give."""

    def __init__(self, streams: Streams, interval_ms: int) -> None:
        self._streams = streams
        self.interval_s = interval_ms / 1000
        self._samples: deque[Sample] = deque(maxlen=max(2, int(KEEP_S / self.interval_s) + 1))
        self.available = True  # False once Redis says it keeps no such counters (< 7)

    async def run_once(self, now: float | None = None) -> Sample | None:
        """Take one sample (None when Redis could not be read)."""
        try:
            counters = await self._streams.stream_counters()
        except StoreError as exc:
            log.debug("throughput sample skipped: %s", exc, extra={"event": "console.sample"})
            return None
        sample = Sample(
            at=time.time() if now is None else now,
            added={p: counters[p][0] for p in PRIORITIES},
            read={p: counters[p][1] for p in PRIORITIES},
        )
        self.available = any(v is not None for v in sample.added.values())
        self._samples.append(sample)
        return sample

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.run_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)

    def minutes(self, count: int = 10, now: float | None = None) -> list[Minute]:
        """The last ``count`` minutes, oldest first: each sample interval's increase is put in
        the minute its interval ends in (a counter that went back, a Redis restart, is
        skipped)."""
        now = time.time() if now is None else now
        first = (int(now) // 60 - count + 1) * 60
        buckets: dict[int, dict[str, float]] = {
            first + 60 * i: {"added": 0, "delivered": 0, "covered": 0.0}
            | dict.fromkeys(PRIORITIES, 0)
            for i in range(count)
        }
        for a, b in itertools.pairwise(self._samples):
            start = int(b.at) // 60 * 60
            bucket = buckets.get(start)
            if bucket is None:
                continue
            bucket["covered"] += b.at - max(a.at, start)
            bucket["added"] += sum(_increase(a.added[p], b.added[p]) for p in PRIORITIES)
            for p in PRIORITIES:
                step = _increase(a.read[p], b.read[p])
                bucket[p] += step
                bucket["delivered"] += step
        return [
            Minute(
                start=start,
                added=int(b["added"]),
                delivered=int(b["delivered"]),
                delivered_by_priority={p: int(b[p]) for p in PRIORITIES},
                covered_s=min(60.0, float(b["covered"])),
            )
            for start, b in buckets.items()
        ]

    def recent_rate(self) -> tuple[float, float] | None:
        """Entries added and delivered per second between the last two samples."""
        if len(self._samples) < 2:
            return None
        a, b = self._samples[-2], self._samples[-1]
        span = b.at - a.at
        if span <= 0:
            return None
        added = sum(_increase(a.added[p], b.added[p]) for p in PRIORITIES)
        read = sum(_increase(a.read[p], b.read[p]) for p in PRIORITIES)
        return added / span, read / span


def _increase(before: int | None, after: int | None) -> int:
    if before is None or after is None or after < before:
        return 0
    return after - before
