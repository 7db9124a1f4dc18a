"""The client a handler submits follow-up tasks through: ``ctx.client`` (asyncio) and
``ctx.sync_client`` (plain handlers, which run in threads).

In an executor these are made on first use from ``TASKSTREAM_URL`` / ``TASKSTREAM_API_KEY``
and shared by the process (one async client per event loop, one sync client); a handler that
never asks pays nothing. ``taskstream.testing`` puts its recorder in their place for the run
of a handler (``use``), through context variables, so concurrent tests do not see each
other's.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from taskstream.shared.client.aio import AsyncClient
from taskstream.shared.client.protocols import AsyncSubmitter, Submitter
from taskstream.shared.client.sync import Client

_async_override: ContextVar[AsyncSubmitter | None] = ContextVar("ts_async_client", default=None)
_sync_override: ContextVar[Submitter | None] = ContextVar("ts_sync_client", default=None)
_lock = threading.Lock()
_sync_default: Client | None = None
_async_defaults: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def async_client() -> AsyncSubmitter:
    """The asyncio client for the running event loop (or the one ``use`` put in place)."""
    override = _async_override.get()
    if override is not None:
        return override
    loop = asyncio.get_running_loop()
    with _lock:
        client = _async_defaults.get(loop)
        if client is None:
            client = _async_defaults[loop] = AsyncClient()
        return client


def sync_client() -> Submitter:
    """The sync client (or the one ``use`` put in place)."""
    global _sync_default
    override = _sync_override.get()
    if override is not None:
        return override
    with _lock:
        if _sync_default is None:
            _sync_default = Client()
        return _sync_default


@contextmanager
def use(sync: Submitter, aio: AsyncSubmitter) -> Iterator[None]:
    """Within the block (and the tasks and threads it starts with a copy of its context),
    handlers' ``ctx.sync_client`` is ``sync`` and ``ctx.client`` is ``aio``."""
    sync_token = _sync_override.set(sync)
    async_token = _async_override.set(aio)
    try:
        yield
    finally:
        _async_override.reset(async_token)
        _sync_override.reset(sync_token)
