"""Lease extension from a thread of its own, so a handler that blocks the event loop (CPU work,
a blocking call) cannot starve it and get its live task reclaimed.

Every ``period`` seconds it extends the lease of every entry the executor holds
(``leases.py``) and of every running slot of a concurrency cap it holds (``caps.py``), marks
the entries it no longer holds as lost, and refreshes the consumer's liveness key (alive for
three periods), even when it holds nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from taskstream.services.executor.leases import Leases
from taskstream.shared.streams import LeaseExtender

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(
        self,
        extender: LeaseExtender,
        consumer: str,
        *,
        period: float,
        leases: Leases,
        slots: Callable[[], list[tuple[str, str]]] = list,
        slot_lease_ms: int = 0,
    ) -> None:
        self._extender = extender
        self._consumer = consumer
        self._period = period
        self._leases = leases
        self._slots = slots  # the running slots of concurrency caps held (caps.py)
        self._slot_lease_ms = slot_lease_ms
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)
        self._extender.close()

    def beat(self) -> None:
        """One heartbeat (the thread calls this every period)."""
        alive_ms = max(1000, int(self._period * 3000))
        lost = self._extender.extend(
            self._consumer,
            self._leases.snapshot(),
            alive_ms=alive_ms,
            slots=self._slots(),
            slot_lease_ms=self._slot_lease_ms,
        )
        n = self._leases.mark_lost(lost) if lost else 0
        if n:
            log.warning(
                "%d entries are no longer this consumer's (reclaimed or lost): their jobs "
                "will not start",
                n,
                extra={"event": "executor.leases_lost"},
            )

    def _loop(self) -> None:
        while not self._stopped.wait(self._period):
            try:
                self.beat()
            except Exception as exc:  # Redis unreachable: keep trying, the lease may hold
                log.warning("heartbeat failed: %s", exc, extra={"event": "executor.hb_failed"})
