"""The dead letters page: filters, cursor pages, and replay or purge of the selected letters
or of everything the filter matches, always in two steps: first the count that would change
(a dry run, ``shared.ops``'s), then a confirmation that does it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from taskstream.services.ingest.console import forms, render, state
from taskstream.services.ingest.console.errors import PageError, require
from taskstream.services.ingest.console.session import WRITE
from taskstream.services.ingest.routes import Route
from taskstream.shared import ops
from taskstream.shared.domain import PRIORITIES
from taskstream.shared.ops_models import MAX_IDS, DlqFilter, DlqResult, DlqSelection

PAGE = 50
SHOWN = 20  # letters named on a confirmation page
OPS = ("replay:selected", "replay:matching", "purge:selected", "purge:matching")
FILTER_FIELDS = ("priority", "type", "reason", "error", "since", "until")


async def dlq_page(request: web.Request) -> web.Response:
    return await _page(request, request.query)


async def _page(
    request: web.Request,
    q: Mapping[str, Any],
    *,
    result: DlqResult | None = None,
) -> web.Response:
    where = _filter(q)
    page = await ops.dlq_list(
        state.db(request),
        where,
        cursor=forms.text(q, "cursor"),
        limit=PAGE,
        tenant=state.tenant(request),
    )
    return render.page(
        request,
        "dlq.html",
        letters=page.dead_letters,
        next_cursor=page.next_cursor,
        filters=_shown(where),
        query={k: v for k, v in _shown(where).items() if v},
        priorities=PRIORITIES,
        first_page=forms.text(q, "cursor") is not None,
        result=result,
    )


async def preview(request: web.Request) -> web.Response:
    """Step one: what the action would change (a dry run), with a form to confirm it."""
    require(request, WRITE)
    form = await request.post()
    op, selection, where = _selection(form)
    action = op.split(":")[0]
    result = await _run(request, action, selection, dry_run=True)
    return render.page(
        request,
        "dlq_confirm.html",
        op=op,
        action=action,
        result=result,
        shown=result.tasks[:SHOWN],
        ids=[str(i) for i in (selection.ids or [])],
        filters=_shown(where),
        back={k: v for k, v in _shown(where).items() if v},
        everything=selection.all,
    )


async def apply(request: web.Request) -> web.Response:
    """Step two: do it, then show the dead letters that are left."""
    require(request, WRITE)
    form = await request.post()
    op, selection, where = _selection(form)
    result = await _run(request, op.split(":")[0], selection, dry_run=False)
    return await _page(request, _shown(where), result=result)


async def _run(
    request: web.Request, action: str, selection: DlqSelection, *, dry_run: bool
) -> DlqResult:
    db, streams, tenant = state.db(request), state.streams(request), state.tenant(request)
    if action == "replay":
        return await ops.dlq_replay(db, streams, selection, dry_run=dry_run, tenant=tenant)
    return await ops.dlq_purge(db, selection, dry_run=dry_run, tenant=tenant)


def _selection(form: MultiDictProxy[Any]) -> tuple[str, DlqSelection, DlqFilter]:
    op = forms.choice(form, "op", OPS)
    if op is None:
        raise PageError(400, "Choose what to do: replay or purge, selected or matching.")
    where = _filter(form)
    if op.endswith(":selected"):
        chosen = list(dict.fromkeys(forms.task_ids(form.getall("ids", []))))
        if not chosen:
            raise PageError(400, "Select at least one dead letter first.")
        if len(chosen) > MAX_IDS:
            raise PageError(400, f"Select at most {MAX_IDS} dead letters at once.")
        return op, DlqSelection(ids=chosen), where
    if where.is_empty():
        return op, DlqSelection(all=True), where
    return op, DlqSelection(filter=where), where


def _filter(q: Mapping[str, Any]) -> DlqFilter:
    return DlqFilter(
        priority=forms.choice(q, "priority", PRIORITIES),  # type: ignore[arg-type]
        type=forms.text(q, "type"),
        reason=forms.text(q, "reason"),
        error=forms.text(q, "error"),
        since=forms.time(q, "since"),
        until=forms.time(q, "until"),
    )


def _shown(where: DlqFilter) -> dict[str, str]:
    return {
        "priority": where.priority or "",
        "type": where.type or "",
        "reason": where.reason or "",
        "error": where.error or "",
        "since": forms.local(where.since),
        "until": forms.local(where.until),
    }


ROUTES: list[Route] = [
    ("GET", "/dlq", dlq_page),
    ("POST", "/dlq/preview", preview),
    ("POST", "/dlq/apply", apply),
]
