"""The one base exception of taskstream and its subclasses.

The store layers (``shared.db`` for Postgres, ``shared.streams`` for Redis) translate every
driver exception at their boundary into one of the ``StoreError`` kinds below, so the rest of
the code decides on meaning (retry later, recreate, reject the input) and never names a
redis-py or asyncpg exception or matches an error's text.
"""


class TaskstreamError(Exception):
    """Base class of every error taskstream raises on purpose."""


class ConfigError(TaskstreamError):
    """A configuration value is missing or does not make sense."""


class StoreError(TaskstreamError):
    """Redis or Postgres refused or failed an operation (the driver's error is chained).

    Raised as is for failures that are not one of the kinds below: a bug, most likely.
    """


class StoreUnavailable(StoreError):
    """The store cannot serve now: unreachable, timed out, read-only after a failover, out of
    connections. Retry later; nothing was half-written."""


class StoreFull(StoreUnavailable):
    """Redis refused a write for lack of memory (``maxmemory`` with ``noeviction``). Like
    unavailable, but trimming (which frees memory) should run first."""


class DataLost(StoreError):
    """Redis lost a stream or the executors' group (restart without persistence, flush,
    failover). The store layer has recreated them; whatever was in flight is re-sent from
    Postgres by the watcher and the janitor."""


class BadData(StoreError):
    """The store refused a value (a NUL character in text, a number out of range). Retrying
    the same data fails again: reject or sanitise it."""


class Conflict(StoreError):
    """A transaction lost a race (deadlock or serialization failure) and was rolled back after
    the boundary's own retries; trying again later is safe."""


class Fenced(TaskstreamError):
    """The attempt was taken over before its transaction could commit; nothing was written."""


class QuotaExceeded(TaskstreamError):
    """A tenant's request would take its tasks in flight past its quota; nothing was
    inserted."""

    def __init__(self, tenant: str, in_flight: int, limit: int) -> None:
        super().__init__(
            f"tenant {tenant} has {in_flight} tasks in flight (scheduled, queued, running or "
            f"retrying) and may have at most {limit}: wait for some to finish"
        )
        self.tenant = tenant
        self.in_flight = in_flight
        self.limit = limit
