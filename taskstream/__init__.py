"""taskstream: a durable task scheduler (Postgres owns every task, Redis Streams deliver them).

The public Python surface, for application code::

    from taskstream import Context, NonRetryableError, handler

    @handler("email.send")
    async def send(payload: dict, ctx: Context) -> None:
        ...

Everything else (``taskstream.services``, ``taskstream.shared``) is the implementation of the
services and may change between releases.
"""

from __future__ import annotations

from taskstream.shared.errors import TaskstreamError
from taskstream.shared.handlers import Context, NonRetryableError, Transaction, handler

__version__ = "0.1.0"

__all__ = [
    "Context",
    "NonRetryableError",
    "TaskstreamError",
    "Transaction",
    "__version__",
    "handler",
]
