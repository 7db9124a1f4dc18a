"""taskstream: a durable task scheduler (Postgres owns every task, Redis Streams deliver them).

The public Python surface, for application code::

    import taskstream

    @taskstream.task("email.send", priority="high")       # a typed task: both sides
    async def send_email(email: Email, ctx: taskstream.Context) -> dict:
        ...
        return {"sent": True}  # stored with the success: GET /v1/tasks/{id} shows it

    with taskstream.Client() as client:                   # producers (AsyncClient for asyncio)
        task = send_email.submit(client, Email(to="ada@example.com"))
        client.wait(task.id, timeout=30)

and, inside the application's own Postgres transaction, ``await taskstream.enqueue(conn,
"email.send", payload, **options)``; ``raise taskstream.Snooze(seconds)`` in a handler runs it
again later without using an attempt.

``taskstream.testing`` runs handlers in an application's own tests. Everything else
(``taskstream.services``, ``taskstream.shared``) is the implementation of the services and
may change between releases.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskstream.shared.client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    NotFound,
    RateLimited,
    ServerError,
    TaskCancelled,
    TaskFailed,
    TooLarge,
    Unauthorized,
    Unavailable,
    ValidationError,
    WaitTimeout,
)
from taskstream.shared.client.models import (
    DeadLetter,
    DlqResult,
    ErrorInfo,
    RetryPolicy,
    SubmitOptions,
    Task,
)
from taskstream.shared.definitions import PayloadError, TaskDefinition, task
from taskstream.shared.domain import Enqueued
from taskstream.shared.enqueue import enqueue
from taskstream.shared.errors import TaskstreamError
from taskstream.shared.handlers import Context, NonRetryableError, Snooze, Transaction, handler
from taskstream.shared.submit import SubmitError

if TYPE_CHECKING:
    from taskstream import testing
    from taskstream.shared.client.aio import AsyncClient
    from taskstream.shared.client.sync import Client

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Context",
    "DeadLetter",
    "DlqResult",
    "Enqueued",
    "ErrorInfo",
    "Forbidden",
    "NonRetryableError",
    "NotFound",
    "PayloadError",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "Snooze",
    "SubmitError",
    "SubmitOptions",
    "Task",
    "TaskCancelled",
    "TaskDefinition",
    "TaskFailed",
    "TaskstreamError",
    "TooLarge",
    "Transaction",
    "Unauthorized",
    "Unavailable",
    "ValidationError",
    "WaitTimeout",
    "__version__",
    "enqueue",
    "handler",
    "task",
    "testing",
]


# Loaded on first use, so that the services (which import this package) do not load httpx:
# `taskstream.Client`, `taskstream.AsyncClient`, and `taskstream.testing` without importing it.
_LAZY = {
    "Client": "taskstream.shared.client.sync",
    "AsyncClient": "taskstream.shared.client.aio",
    "testing": "taskstream.testing",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'taskstream' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(_LAZY[name])
    value = module if name == "testing" else getattr(module, name)
    globals()[name] = value
    return value
