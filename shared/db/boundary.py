"""The Postgres error boundary: every asyncpg (and socket) exception becomes one of the
project's ``StoreError`` kinds here, and nowhere else (procrastinate's ``wrap_exceptions``).

Every public coroutine method of the query families is wrapped (``wrap_public``); a deadlock
or serialization failure rolls its statement back, so the call is retried a few times before
it surfaces as ``Conflict``. Errors the project raises itself pass through untouched.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import asyncpg

from taskstream.shared import wrapping
from taskstream.shared.errors import (
    BadData,
    Conflict,
    StoreError,
    StoreUnavailable,
    TaskstreamError,
)

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
C = TypeVar("C", bound=type)

CONFLICT_RETRIES = 3  # extra tries of a call that lost a deadlock or serialization race

# The server cannot serve now, or the connection could not be made or broke.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.InterfaceError,  # the connection closed under us, pool closing
    asyncpg.exceptions.OperatorInterventionError,  # 57: shutdown, admin cancel, timeout
    asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections, disk full
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # 25006: a read-only (demoted) primary
    asyncpg.exceptions.CannotConnectNowError,
)
_CONFLICT: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DeadlockDetectedError,  # 40P01
    asyncpg.exceptions.SerializationError,  # 40001
)
_BAD_DATA: tuple[type[BaseException], ...] = (
    asyncpg.DataError,  # class 22 (NUL in text, bad JSON, out of range) and bad arguments
    asyncpg.IntegrityConstraintViolationError,  # class 23
)


def translate(exc: BaseException) -> StoreError:
    """The project's error for a driver exception (its own errors are returned as they are)."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, _UNAVAILABLE):
        return StoreUnavailable(f"Postgres is not reachable: {exc!r}")
    if isinstance(exc, _CONFLICT):
        return Conflict(f"Postgres rolled back a transaction that lost a race: {exc}")
    if isinstance(exc, _BAD_DATA):
        return BadData(f"Postgres refused a value: {exc}")
    return StoreError(f"Postgres failed: {exc!r}")


def is_driver_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the driver or the socket (and must be translated)."""
    return isinstance(exc, (asyncpg.PostgresError, *_UNAVAILABLE)) and not isinstance(
        exc, TaskstreamError
    )


def wrap(fn: F, *, retries: int = CONFLICT_RETRIES) -> F:
    """``fn`` with driver exceptions translated, and lost races retried ``retries`` times (0
    for statements on a connection whose transaction is not ours to run again)."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        for attempt in range(retries + 1):
            try:
                return await fn(*args, **kwargs)
            except TaskstreamError:
                raise
            except Exception as exc:
                if not is_driver_error(exc):
                    raise
                error = translate(exc)
                if isinstance(error, Conflict) and attempt < retries:
                    log.info(
                        "%s lost a race, retrying: %s",
                        fn.__qualname__,
                        exc,
                        extra={"event": "db.conflict_retry"},
                    )
                    await asyncio.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
                    continue
                raise error from exc
        raise AssertionError("unreachable")

    return cast(F, wrapper)


def wrap_public(cls: C) -> C:
    """Put the boundary on every public coroutine method defined on ``cls`` itself."""
    return wrapping.wrap_public(cls, wrap)
