"""Every stream entry an executor holds, and which of them it has lost.

An executor holds an entry from the moment it reads it until its ack goes through: while it
is prefetched, claimed and waiting for a runner, running, and finished but waiting for its
commit and ack. The heartbeat extends the lease of every one of them (not only the running
ones: an entry that waits idle past the visibility timeout would be reclaimed and run twice),
and reports the ones that are no longer this consumer's (reclaimed meanwhile, say after a
Redis outage longer than the timeout); a job whose lease is lost is never started.

Shared with the heartbeat thread, hence the lock. Keys are ``(priority, entry_id)``: entry ids
are unique per stream only.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

Key = tuple[str, str]


class Leases:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: set[Key] = set()
        self._lost: set[Key] = set()

    def hold(self, keys: Iterable[Key]) -> None:
        with self._lock:
            self._held.update(keys)

    def release(self, keys: Iterable[Key]) -> None:
        with self._lock:
            for key in keys:
                self._held.discard(key)
                self._lost.discard(key)

    def snapshot(self) -> list[Key]:
        with self._lock:
            return list(self._held)

    def mark_lost(self, keys: Iterable[Key]) -> int:
        """Mark held entries lost; returns how many (an entry acked since the heartbeat's
        snapshot is no longer held and not counted)."""
        with self._lock:
            lost = [k for k in keys if k in self._held and k not in self._lost]
            self._lost.update(lost)
            return len(lost)

    def is_lost(self, key: Key) -> bool:
        with self._lock:
            return key in self._lost

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)
