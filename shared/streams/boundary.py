"""The Redis error boundary: every redis-py (and socket) exception becomes one of the project's
``StoreError`` kinds here, and nowhere else.

Every public coroutine method of the operation families is wrapped (``wrap_public``). When
Redis answers that a stream or the executors' group is gone (``NOGROUP``, or ``UNBLOCKED`` for
a blocked read whose stream was deleted), the groups are recreated before ``DataLost`` is
raised, so the next call works and the caller only decides what the loss means. Errors the
project raises itself pass through untouched.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError as RedisDataError
from redis.exceptions import OutOfMemoryError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from taskstream.shared import wrapping
from taskstream.shared.errors import (
    BadData,
    DataLost,
    StoreError,
    StoreFull,
    StoreUnavailable,
    TaskstreamError,
)

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
C = TypeVar("C", bound=type)

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError,  # also BusyLoadingError: Redis is loading its data
    RedisTimeoutError,
    OSError,
    TimeoutError,
)
# Replies that mean "not now" (a replica, a failover, a cluster reconfiguring).
_NOT_NOW = ("READONLY", "LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY ")


def is_lost(reply: BaseException) -> bool:
    """Whether a reply says a stream or the group vanished (restart, flush, deletion)."""
    text = str(reply)
    return isinstance(reply, ResponseError) and ("NOGROUP" in text or "UNBLOCKED" in text)


def translate(exc: BaseException) -> StoreError:
    """The project's error for a driver exception (its own errors are returned as they are)."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, _UNAVAILABLE):
        return StoreUnavailable(f"Redis is not reachable: {exc!r}")
    if is_lost(exc):
        return DataLost(f"Redis lost a stream or its group: {exc}")
    text = str(exc)
    if isinstance(exc, OutOfMemoryError) or (
        isinstance(exc, ResponseError) and text.startswith("OOM")
    ):
        return StoreFull(f"Redis is out of memory: {exc}")
    if isinstance(exc, ResponseError) and text.startswith(_NOT_NOW):
        return StoreUnavailable(f"Redis cannot serve now: {exc}")
    if isinstance(exc, RedisDataError):
        return BadData(f"Redis refused a value: {exc}")
    return StoreError(f"Redis failed: {exc!r}")


def is_driver_error(exc: BaseException) -> bool:
    return isinstance(exc, (RedisError, *_UNAVAILABLE)) and not isinstance(exc, TaskstreamError)


def wrap(fn: F) -> F:
    """``fn`` with driver exceptions translated; groups recreated when data was lost."""

    @functools.wraps(fn)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(self, *args, **kwargs)
        except TaskstreamError:
            raise
        except Exception as exc:
            if not is_driver_error(exc):
                raise
            error = translate(exc)
            if isinstance(error, DataLost):
                await self._recreate_groups()
            raise error from exc

    return cast(F, wrapper)


def wrap_sync(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (a blocking call, made from a thread) with driver exceptions translated."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TaskstreamError:
            raise
        except Exception as exc:
            if not is_driver_error(exc):
                raise
            raise translate(exc) from exc

    return wrapper


def wrap_public(cls: C) -> C:
    """Put the boundary on every public coroutine method defined on ``cls`` itself."""
    return wrapping.wrap_public(cls, wrap)
