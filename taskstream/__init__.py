"""taskstream: a durable task scheduler (Postgres owns every task, Redis Streams deliver them).

The public Python surface, for application code::

    from taskstream import Context, NonRetryableError, Snooze, handler

    @handler("email.send")
    async def send(payload: dict, ctx: Context) -> dict:
        ...
        return {"sent": True}  # stored with the success: GET /v1/tasks/{id} shows it

and, inside the application's own Postgres transaction, ``await taskstream.enqueue(conn,
"email.send", payload, **options)``.

Everything else (``taskstream.services``, ``taskstream.shared``) is the implementation of the
services and may change between releases.
"""

from __future__ import annotations

from taskstream.shared.domain import Enqueued
from taskstream.shared.enqueue import enqueue
from taskstream.shared.errors import TaskstreamError
from taskstream.shared.handlers import Context, NonRetryableError, Snooze, Transaction, handler
from taskstream.shared.submit import SubmitError

__version__ = "0.1.0"

__all__ = [
    "Context",
    "Enqueued",
    "NonRetryableError",
    "Snooze",
    "SubmitError",
    "TaskstreamError",
    "Transaction",
    "__version__",
    "enqueue",
    "handler",
]
