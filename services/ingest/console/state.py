"""What every console page shares: the console's own state under typed keys, and the stores
of the ingest app it is mounted in (``request.config_dict`` reads through to the parent)."""

from __future__ import annotations

import jinja2
from aiohttp import web

from taskstream.services.ingest import state as ingest_state
from taskstream.services.ingest.console.session import Access, Principal, Session, Sessions
from taskstream.services.ingest.console.throughput import Throughput
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.streams import Streams

SESSIONS: web.AppKey[Sessions] = web.AppKey("console_sessions", Sessions)
ACCESS: web.AppKey[Access] = web.AppKey("console_access", object)  # type: ignore[arg-type]
THROUGHPUT: web.AppKey[Throughput] = web.AppKey("console_throughput", Throughput)
TEMPLATES: web.AppKey[jinja2.Environment] = web.AppKey("console_templates", jinja2.Environment)

# The request's session (set by the console's middleware), and a cookie to set on the answer.
SESSION: web.RequestKey[Session] = web.RequestKey("console_session", Session)
NEW_COOKIE: web.RequestKey[str] = web.RequestKey("console_new_cookie", str)


def config(request: web.Request) -> Config:
    return request.config_dict[ingest_state.CONFIG]


def db(request: web.Request) -> Database:
    return request.config_dict[ingest_state.DB]


def streams(request: web.Request) -> Streams:
    return request.config_dict[ingest_state.STREAMS]


def sessions(request: web.Request) -> Sessions:
    return request.config_dict[SESSIONS]


def access(request: web.Request) -> Access:
    return request.config_dict[ACCESS]


def throughput(request: web.Request) -> Throughput:
    return request.config_dict[THROUGHPUT]


def session(request: web.Request) -> Session:
    return request[SESSION]


def principal(request: web.Request) -> Principal | None:
    return session(request).principal


def tenant(request: web.Request) -> str | None:
    """The tenant whose tasks, dead letters, pending entries and schedules the pages show:
    the signed-in key's, or None (every tenant) for an admin or with authentication off."""
    who = session(request).principal
    return who.tenant if who is not None else None
