"""The one mapping from errors to HTTP answers, and the JSON response helpers.

Every error is ``{"error": {"code", "message", "field"?}}``: ``Invalid`` carries its status
(400 a bad parameter or malformed JSON, 422 a body that does not validate, 404, 409, 413);
``ops.BadRequest`` is a bad parameter (400); ``schedule_ops.InvalidSchedule`` a schedule or
pause that does not validate (422); a value the store refused is 422; a store that
cannot serve is 503 with ``Retry-After``; anything unexpected is logged and answered 500
without details.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from taskstream.shared import ops, schedule_ops
from taskstream.shared.errors import BadData, StoreError, StoreUnavailable
from taskstream.shared.models import ApiError, ErrorBody

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Invalid(Exception):
    """A request that cannot be served as sent: its status and the API error to answer."""

    def __init__(self, status: int, error: ApiError, headers: dict[str, str] | None = None) -> None:
        super().__init__(error.message)
        self.status = status
        self.error = error
        self.headers = headers


def invalid(status: int, message: str, field: str | None = None, code: str = "invalid") -> Invalid:
    return Invalid(status, ApiError(code=code, message=message, field=field))


def not_found(message: str) -> Invalid:
    return Invalid(404, ApiError(code="not_found", message=message))


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_encode(body), status=status, content_type="application/json", headers=headers
    )


def error_response(
    status: int, code: str, message: str, field: str | None = None, **headers: str
) -> web.Response:
    body = ErrorBody(error=ApiError(code=code, message=message, field=field))
    return json_response(body, status, headers or None)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Invalid as exc:
        return json_response(ErrorBody(error=exc.error), exc.status, exc.headers)
    except ops.BadRequest as exc:
        return error_response(400, "invalid", str(exc), exc.field)
    except schedule_ops.InvalidSchedule as exc:
        return error_response(422, "invalid", str(exc), exc.field)
    except StoreUnavailable as exc:
        log.warning("store unavailable: %s", exc, extra={"event": "ingest.unavailable"})
        return error_response(503, "unavailable", str(exc), **{"Retry-After": "1"})
    except BadData as exc:
        return error_response(422, "invalid", str(exc))
    except StoreError as exc:
        log.error("store error: %s", exc, extra={"event": "ingest.store_error"})
        return error_response(
            503, "store_error", "the store refused the request", **{"Retry-After": "1"}
        )
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(413, "too_large", exc.text or "request body too large")
    except web.HTTPException as exc:
        if exc.content_type == "application/json":
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
        return error_response(exc.status, code, exc.reason, **headers)
    except Exception:
        log.exception("unhandled error", extra={"event": "ingest.error"})
        return error_response(500, "internal", "internal error")
