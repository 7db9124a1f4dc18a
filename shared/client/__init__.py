"""The Python client of the taskstream API: ``Client`` (sync) and ``AsyncClient`` (asyncio) on
httpx, the ``Task`` they return and the errors they raise. The calls themselves are written
once, without I/O, in ``flows``; ``sync`` and ``aio`` drive them."""

from taskstream.shared.client.aio import AsyncClient
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
from taskstream.shared.client.sync import Client

__all__ = [
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "DeadLetter",
    "DlqResult",
    "ErrorInfo",
    "Forbidden",
    "NotFound",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "SubmitOptions",
    "Task",
    "TaskCancelled",
    "TaskFailed",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "ValidationError",
    "WaitTimeout",
]
