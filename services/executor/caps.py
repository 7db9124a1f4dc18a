"""Cluster-wide concurrency caps, as this executor obeys them: at most N tasks of a type, or
of a tenant, running at once across every executor.

The caps are read from Postgres every ``LIMITS_POLL_MS``. While there are none the reader
tests one flag per read and nothing else happens. With caps, a read batch's capped tasks are
found in one query (``Database.capped_tasks``), and each takes its slots in one Lua call for
the batch (``Streams.acquire_slots``: a slot is a member of the cap's sorted set, scored by
its lease expiry). A task whose cap is full is not failed: it is set aside, still queued at
the same attempt (no attempt used; ``Database.wait_for_slot``), its entry acknowledged, and
the watcher's unwait role re-publishes it when the cap has a free slot. A slot is held from
before the claim until the task's entry is acknowledged (or let go), its lease pushed ahead by
the heartbeat like the entries'; a dead executor's slots therefore run out within
``VIS_TIMEOUT_MS`` and the next acquisition drops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterable

from taskstream.services.executor.leases import Key
from taskstream.shared.db import Database
from taskstream.shared.domain import Delivery
from taskstream.shared.errors import StoreError
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import SlotRequest, Streams

log = logging.getLogger(__name__)


class Caps:
    """The caps this executor obeys (empty until first read) and the slots it holds."""

    def __init__(
        self, db: Database, streams: Streams, metrics: Metrics, *, poll_s: float, lease_ms: int
    ) -> None:
        self._db = db
        self._streams = streams
        self._metrics = metrics
        self._poll_s = poll_s
        self.lease_ms = lease_ms
        self.types: dict[str, int] = {}
        self.tenants: dict[str, int] = {}
        self._lock = threading.Lock()  # the heartbeat thread reads the held slots
        self._held: dict[Key, SlotRequest] = {}
        self._releasing: set[asyncio.Task[None]] = set()

    @property
    def active(self) -> bool:
        return bool(self.types or self.tenants)

    async def refresh(self) -> bool:
        """Read the caps again; False (and the last known kept) if Postgres cannot say."""
        try:
            limits = await self._db.concurrency_limits()
        except StoreError as exc:
            log.info("cannot read the caps: %s", exc, extra={"event": "executor.caps"})
            return False
        types = {c.name: c.max_running for c in limits if c.kind == "type"}
        tenants = {c.name: c.max_running for c in limits if c.kind == "tenant"}
        if (types, tenants) != (self.types, self.tenants):
            log.info("concurrency caps: types %s, tenants %s", types or "none",
                     tenants or "none", extra={"event": "executor.caps_changed"})  # fmt: skip
            self.types, self.tenants = types, tenants
        return True

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            await asyncio.sleep(self._poll_s)
            await self.refresh()

    async def admit(self, deliveries: list[Delivery]) -> tuple[list[Delivery], list[Delivery]]:
        """Take slots for the capped tasks among ``deliveries``: those to claim (with their
        slots, or uncapped), and those set aside to wait (their entries are to be acked).
        Raises ``StoreError`` (nothing taken) when a store cannot answer."""
        types, tenants = self.types, self.tenants
        capped = await self._db.capped_tasks(
            [d.task_id for d in deliveries], [d.attempt for d in deliveries],
            list(types), list(tenants),
        )  # fmt: skip
        if not capped:
            return deliveries, []
        keys = self._streams.keys
        requests: dict[Key, SlotRequest] = {}
        limits: dict[str, int] = {}
        for d in deliveries:
            found = capped.get(d.task_id)
            if found is None:
                continue
            task_type, tenant = found
            caps = []
            for kind, name, table in (("type", task_type, types), ("tenant", tenant, tenants)):
                if name in table:
                    key = keys.slots(kind, name)
                    limits[key] = table[name]
                    caps.append(key)
            requests[(d.priority, d.entry_id)] = SlotRequest(
                member=f"{d.task_id}:{d.attempt}", caps=caps
            )
        order = list(requests)
        full = await self._streams.acquire_slots(
            [requests[k] for k in order], limits, self.lease_ms
        )
        granted = {k: requests[k] for k, f in zip(order, full, strict=True) if f is None}
        with self._lock:
            self._held.update(granted)
        blocked = {k: f for k, f in zip(order, full, strict=True) if f is not None}
        if not blocked:
            return deliveries, []
        by_key = {(d.priority, d.entry_id): d for d in deliveries}
        waits = []
        for k, cap in blocked.items():
            d = by_key[k]
            _, kind, name = cap.rsplit(":", 2)
            waits.append((d.task_id, d.attempt, kind, name))
        try:
            aside = await self._db.wait_for_slot(waits)
        except StoreError:
            self.forget(list(granted))
            raise
        waiting = [by_key[k] for k in blocked if by_key[k].task_id in aside]
        for kind in (w[2] for w in waits if w[0] in aside):
            self._metrics.cap_waits.add(1, {"kind": kind})
        # Blocked but not set aside: no longer queued at that attempt, so the claim drops it.
        return [d for d in deliveries if d not in waiting], waiting

    def forget(self, keys: Iterable[Key]) -> None:
        """These entries are done with (acked or let go): their slots are given back."""
        if not self._held:
            return
        with self._lock:
            gone = [r for r in (self._held.pop(k, None) for k in keys) if r is not None]
        if not gone:
            return
        task = asyncio.get_running_loop().create_task(self._release(gone))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _release(self, gone: list[SlotRequest]) -> None:
        try:
            await self._streams.release_slots(gone)
        except StoreError as exc:  # their leases run out within the visibility timeout
            log.warning("cannot give back %d slots: %s", len(gone), exc,
                        extra={"event": "executor.slots_release_failed"})  # fmt: skip

    def snapshot(self) -> list[tuple[str, str]]:
        """``(cap key, member)`` of every slot held, for the heartbeat."""
        with self._lock:
            return [(key, r.member) for r in self._held.values() for key in r.caps]

    async def close(self) -> None:
        for task in list(self._releasing):
            with contextlib.suppress(asyncio.CancelledError):
                await task
