"""The console's errors: a page that cannot be served as asked, answered as an HTML page with
its status (the console's middleware renders it), and the scope check of every action."""

from __future__ import annotations

from aiohttp import web

from taskstream.services.ingest.console import state


class PageError(Exception):
    def __init__(self, status: int, message: str, title: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.title = title or {
            400: "Bad request",
            401: "Not signed in",
            403: "Not allowed",
            404: "Not found",
            409: "Conflict",
        }.get(status, "Error")


def require(request: web.Request, scope: str) -> None:
    """Refuse (403) a principal without ``scope``: the pages hide such buttons, and a POST
    sent anyway gets this."""
    principal = state.principal(request)
    if principal is None or not principal.can(scope):
        raise PageError(403, f"This needs the {scope} scope, which your key does not have.")
