"""Lease extension from a thread of its own, so a handler that blocks the event loop (CPU work,
a blocking call) cannot starve it and get its live task reclaimed."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from taskstream.shared.streams import LeaseExtender

log = logging.getLogger(__name__)


class Heartbeat:
    """Every ``period`` seconds, reset the idle time of the entries ``leases()`` returns."""

    def __init__(
        self,
        extender: LeaseExtender,
        consumer: str,
        *,
        period: float,
        leases: Callable[[], list[tuple[str, str]]],
    ) -> None:
        self._extender = extender
        self._consumer = consumer
        self._period = period
        self._leases = leases
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)
        self._extender.close()

    def _loop(self) -> None:
        while not self._stopped.wait(self._period):
            entries = self._leases()
            if not entries:
                continue
            try:
                self._extender.extend(self._consumer, entries)
            except Exception as exc:  # Redis unreachable: keep trying, the lease may hold
                log.warning("heartbeat failed: %s", exc, extra={"event": "executor.hb_failed"})
