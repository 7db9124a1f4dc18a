"""Rendering console pages: the Jinja2 templates shipped with the package, the filters they
use (times, durations, JSON), and ``page``, which adds what every page needs (who is signed
in, whether they may change things, the CSRF token)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import jinja2
import msgspec
from aiohttp import web

from taskstream.services.ingest.console import state
from taskstream.services.ingest.console.session import ADMIN, WRITE

NONE = "\u2013"  # an en dash: no value
PAYLOAD_MAX_CHARS = 64 * 1024  # a payload or result shown in a page is cut past this


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("taskstream.services.ingest.console", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        duration=duration, when=when, iso=iso, pretty=pretty, number=number, decoded=decoded
    )
    return env


def page(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    """A whole page (or, for htmx, a fragment template) as an HTML answer."""
    session = state.session(request)
    principal = session.principal
    config = state.config(request)
    text = (
        request.config_dict[state.TEMPLATES]
        .get_template(template)
        .render(
            principal=principal,
            can_write=principal is not None and principal.can(WRITE),
            is_admin=principal is not None and principal.can(ADMIN),
            signed_in=principal is not None,
            sign_in_required=state.access(request).required,
            csrf=state.sessions(request).csrf(session),
            refresh_ms=config.console.console_refresh_ms,
            path=request.path,
            **context,
        )
    )
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def duration(ms: int | float | None) -> str:
    """``1.2 s``, ``3 min 4 s``, ``2 h 5 min``, ``3 d 4 h``; an en dash for none."""
    if ms is None:
        return NONE
    if ms < 1000:
        return f"{int(ms)} ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(int(s), 60)
    if m < 60:
        return f"{m} min {s} s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m} min"
    d, h = divmod(h, 24)
    return f"{d} d {h} h"


def when(value: dt.datetime | float | None) -> str:
    """A time in UTC, to the second: ``2026-12-02 13:42:01Z``."""
    if value is None:
        return NONE
    if isinstance(value, int | float):
        value = dt.datetime.fromtimestamp(value, dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def iso(value: dt.datetime | float) -> str:
    if isinstance(value, int | float):
        value = dt.datetime.fromtimestamp(value, dt.UTC)
    return value.astimezone(dt.UTC).isoformat()


def pretty(value: Any, limit: int = PAYLOAD_MAX_CHARS) -> str:
    """JSON, indented; cut at ``limit`` characters with a note saying how much was left out."""
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… ({len(text) - limit:,} more characters not shown)"


def decoded(value: Any) -> Any:
    """A value held as raw JSON (``msgspec.Raw``, e.g. a schedule's task), decoded."""
    if isinstance(value, msgspec.Raw):
        return msgspec.json.decode(value)
    return value


def number(value: int | float | None) -> str:
    if value is None:
        return NONE
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}"
