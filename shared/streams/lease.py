"""Lease extension from a thread of its own, on a blocking connection."""

from __future__ import annotations

from collections.abc import Iterable

from taskstream.shared.keys import GROUP, Keys
from taskstream.shared.streams.boundary import wrap_sync


class LeaseExtender:
    """Extends leases from a thread of its own (its own blocking connection), so a handler
    that blocks the event loop with CPU work cannot starve the heartbeat."""

    def __init__(self, url: str, keys: Keys) -> None:
        import redis

        self._r = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        self._keys = keys

    @wrap_sync
    def extend(self, consumer: str, entries: Iterable[tuple[str, str]]) -> None:
        """XCLAIM … JUSTID with min-idle 0: reset idle time, count no delivery."""
        by_stream: dict[str, list[str]] = {}
        for priority, entry_id in entries:
            by_stream.setdefault(self._keys.stream(priority), []).append(entry_id)
        if not by_stream:
            return
        pipe = self._r.pipeline(transaction=False)
        for key, ids in by_stream.items():
            pipe.xclaim(key, GROUP, consumer, 0, ids, justid=True)  # type: ignore[arg-type]
        pipe.execute()

    def close(self) -> None:
        self._r.close()
