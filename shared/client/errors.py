"""The client's errors: one class per kind of answer the API gives, all ``TaskstreamError``.

The API answers every error as ``{"error": {"code", "message", "field"?}}`` with its status
(``services/ingest/errors.py``); ``from_answer`` turns that into the matching class, so callers
``except taskstream.NotFound`` instead of reading status codes. A batch's per-task errors have
a code but no status of their own: ``from_code`` maps them the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from taskstream.shared.errors import TaskstreamError

if TYPE_CHECKING:
    from taskstream.shared.client.models import Task


class ApiError(TaskstreamError):
    """The API refused a request (or could not be reached): ``status`` (None when no answer
    came), ``code`` and ``message`` from the error body, ``field`` naming the bad input when
    the API named one."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "error",
        field: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f" ({self.field})" if self.field else ""
        status = f"{self.status} " if self.status is not None else ""
        return f"{status}{self.code}: {self.message}{where}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status}, code={self.code!r})"


class BadRequest(ApiError):
    """400: malformed JSON or a bad query parameter (``field`` names it)."""


class ValidationError(ApiError):
    """422, or refused by the client before sending: the input does not validate; ``field``
    names it (``payload.to``, ``max_attempts``, ``tasks[3].payload``…)."""


class Unauthorized(ApiError):
    """401: no credentials, or ones the API does not accept (``TASKSTREAM_API_KEY``)."""


class Forbidden(ApiError):
    """403: the credentials lack the scope this route needs."""


class NotFound(ApiError):
    """404: no such task (or dead letter, or route)."""


class Conflict(ApiError):
    """409: an idempotency key used with another body (``code`` ``idempotency_conflict``), or a
    task that cannot be cancelled in its state (``not_cancellable``)."""


class TooLarge(ApiError):
    """413: the request body or the batch is over the API's limit."""


class RateLimited(ApiError):
    """429: over a rate or in-flight limit; ``retry_after`` is the API's ``Retry-After``."""


class ServerError(ApiError):
    """500 (or another unexpected status): the API failed; its log has the details."""


class Unavailable(ApiError):
    """503 (502, 504): a backing store cannot serve now. Retried by the client a bounded
    number of times before it is raised."""


class ConnectionFailed(Unavailable):
    """No answer: the connection failed, was cut or timed out, on every try."""


class TaskFailed(TaskstreamError):
    """``wait`` found the task ended without success: ``task`` is its final state, ``error``
    its recorded error (type, message, traceback) when it has one."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.error = task.last_error
        why = f": {self.error.type}: {self.error.message}" if self.error else ""
        super().__init__(f"task {task.id} ({task.type}) is {task.status}{why}")


class TaskCancelled(TaskFailed):
    """``wait`` found the task cancelled."""


class WaitTimeout(TaskstreamError, TimeoutError):
    """``wait`` ran out of time before the task ended; ``task`` is its last state seen."""

    def __init__(self, task: Task, timeout: float) -> None:
        self.task = task
        super().__init__(f"task {task.id} is still {task.status} after {timeout:g} s")


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    422: ValidationError,
    429: RateLimited,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}

_BY_CODE: dict[str, type[ApiError]] = {
    "invalid": ValidationError,
    "invalid_json": BadRequest,
    "not_found": NotFound,
    "idempotency_conflict": Conflict,
    "not_cancellable": Conflict,
    "conflict": Conflict,
    "too_large": TooLarge,
    "batch_too_large": TooLarge,
    "rate_limited": RateLimited,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "unavailable": Unavailable,
    "store_error": Unavailable,
    "internal": ServerError,
}


class _Error(msgspec.Struct, frozen=True):
    code: str = "error"
    message: str = ""
    field: str | None = None


class _Body(msgspec.Struct, frozen=True):
    error: _Error


_body = msgspec.json.Decoder(_Body)


def from_answer(status: int, body: bytes, headers: Mapping[str, str]) -> ApiError:
    """The error an API answer with ``status`` ≥ 400 stands for."""
    try:
        error = _body.decode(body).error
    except msgspec.DecodeError:  # not ours (a proxy's page, say): keep the start of it
        text = body[:200].decode("utf-8", "replace").strip() or f"HTTP {status}"
        error = _Error(code="http_error", message=text)
    cls = _BY_STATUS.get(status) or _BY_CODE.get(error.code) or ServerError
    return cls(
        error.message,
        status=status,
        code=error.code,
        field=error.field,
        retry_after=_seconds(headers.get("retry-after")),
    )


def from_code(error: Any) -> ApiError:
    """The error of one task in a batch answer (``{"code", "message", "field"?}``)."""
    e = msgspec.convert(error, _Error) if not isinstance(error, _Error) else error
    return _BY_CODE.get(e.code, ApiError)(e.message, code=e.code, field=e.field)


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_NAMED = re.compile(r"Object (?:missing required|contains unknown) field `(?P<name>[^`]+)`")


def invalid(exc: msgspec.ValidationError | TypeError | ValueError, prefix: str) -> ValidationError:
    """A client-side ``ValidationError`` from msgspec's message, its field named from
    ``prefix`` and the path msgspec reports (``payload`` + ``$.to`` → ``payload.to``)."""
    message = str(exc)
    at = _AT.search(message)
    path = at.group("path") if at else ""
    text = message[: at.start()] if at else message
    named = _NAMED.match(text)
    if named:
        path = f"{path}.{named.group('name')}"
    field = prefix + path if not path or path.startswith((".", "[")) else f"{prefix}.{path}"
    return ValidationError(text, code="invalid", field=field)
