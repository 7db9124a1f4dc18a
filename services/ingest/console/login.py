"""Sign-in and sign-out: an API key becomes a session (``Access.sign_in``); a new session id
on each sign-in, so a session fixed before it is worth nothing after."""

from __future__ import annotations

from aiohttp import web

from taskstream.services.ingest.console import forms, render, state
from taskstream.services.ingest.routes import Route


async def login_page(request: web.Request) -> web.Response:
    return render.page(request, "login.html", next=_next(request.query.get("next")), error=None)


async def login(request: web.Request) -> web.Response:
    form = await request.post()
    target = _next(forms.text(form, "next"))
    key = forms.text(form, "api_key")
    principal = await state.access(request).sign_in(key) if key else None
    if principal is None:
        return render.page(
            request, "login.html", 401, next=target, error="That API key is not valid."
        )
    sessions = state.sessions(request)
    request[state.NEW_COOKIE] = sessions.dump(sessions.new(principal))
    return web.Response(status=303, headers={"Location": target})


async def logout(request: web.Request) -> web.Response:
    sessions = state.sessions(request)
    request[state.NEW_COOKIE] = sessions.dump(sessions.new(None))
    target = "/ui/login" if state.access(request).required else "/ui/"
    return web.Response(status=303, headers={"Location": target})


def _next(value: str | None) -> str:
    """Where to go after signing in: only a console page of this site."""
    if value and value.startswith("/ui/") and not value.startswith("//"):
        return value
    return "/ui/"


ROUTES: list[Route] = [
    ("GET", "/login", login_page),
    ("POST", "/login", login),
    ("POST", "/logout", logout),
]
