"""Lease extension from a thread of its own, on a blocking connection."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from taskstream.shared.keys import GROUP, Keys
from taskstream.shared.streams.base import LUA_DIR
from taskstream.shared.streams.boundary import wrap_sync

UNPACK_MAX = 4000  # ids per script call (Lua's unpack has a stack limit)


class LeaseExtender:
    """Extends leases from a thread of its own (its own blocking connection), so a handler
    that blocks the event loop with CPU work cannot starve the heartbeat. Each call also
    refreshes the consumer's liveness key (``{ns}:alive:<consumer>``), which tells the janitor
    that a running task whose entry Redis lost still has a live executor."""

    def __init__(self, url: str, keys: Keys, *, timeout_s: float = 5.0) -> None:
        import redis

        self._r = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=timeout_s)
        self._keys = keys
        self._script: Any = self._r.register_script((LUA_DIR / "extend_leases.lua").read_text())

    @wrap_sync
    def extend(
        self,
        consumer: str,
        entries: Iterable[tuple[str, str]],
        *,
        alive_ms: int,
        slots: Iterable[tuple[str, str]] = (),
        slot_lease_ms: int = 0,
    ) -> list[tuple[str, str]]:
        """Reset the idle time of ``entries`` this consumer still holds (``(priority,
        entry_id)``), mark the consumer alive for ``alive_ms``, push the lease of its running
        slots (``(cap key, member)``) ``slot_lease_ms`` ahead, and return the entries it no
        longer holds."""
        by_priority: dict[str, list[str]] = {}
        for priority, entry_id in entries:
            by_priority.setdefault(priority, []).append(entry_id)
        pipe = self._r.pipeline(transaction=False)
        pipe.set(self._keys.alive(consumer), "1", px=alive_ms)
        slot_list = list(slots)
        if slot_list:
            # Redis's clock, as the acquire script's: a lease ahead of its TIME.
            seconds, micros = self._r.time()
            expiry = int(seconds) * 1000 + int(micros) // 1000 + slot_lease_ms
            for key, member in slot_list:
                pipe.zadd(key, {member: expiry}, xx=True)
        calls: list[str] = []
        for priority, ids in by_priority.items():
            for start in range(0, len(ids), UNPACK_MAX):
                self._script(
                    keys=[self._keys.stream(priority)],
                    args=[GROUP, consumer, *ids[start : start + UNPACK_MAX]],
                    client=pipe,
                )
                calls.append(priority)
        replies = pipe.execute()
        lost: list[tuple[str, str]] = []
        for priority, reply in zip(calls, replies[1 + len(slot_list) :], strict=True):
            lost.extend((priority, i.decode() if isinstance(i, bytes) else i) for i in reply)
        return lost

    def close(self) -> None:
        self._r.close()
