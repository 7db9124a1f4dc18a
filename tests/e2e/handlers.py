"""Handlers for the end-to-end tests: each run is written to a file, so a test can count how
many times a task's handler started and how many times it ran to success."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from taskstream import Context, handler


def _note(event: str, ctx: Context) -> None:
    path = os.environ["E2E_RUNS_FILE"]
    line = f"{event} {ctx.task_id} {ctx.attempt}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write with O_APPEND: lines never interleave
    finally:
        os.close(fd)


@handler("recorded")
async def recorded(payload: Any, ctx: Context) -> None:
    """Sleeps ``ms``, fails the first ``fail_first_n`` attempts, or always with ``fail``."""
    _note("start", ctx)
    if payload.get("ms"):
        await asyncio.sleep(payload["ms"] / 1000)
    if payload.get("fail") or ctx.attempt_number <= payload.get("fail_first_n", 0):
        _note("fail", ctx)
        raise RuntimeError("recorded: failing on purpose")
    _note("done", ctx)


@handler("effect", transactional=True)
async def effect(payload: Any, ctx: Context) -> None:
    """An exactly-once effect: a row written in the task's own transaction (the chaos test
    counts them: one per succeeded task, whatever crashed)."""
    _note("start", ctx)
    assert ctx.db is not None
    await ctx.db.execute("INSERT INTO effects (task_id, attempt) VALUES ($1, $2)", ctx.task_id,
                         ctx.attempt)  # fmt: skip
    if payload.get("ms"):
        await asyncio.sleep(payload["ms"] / 1000)
    _note("done", ctx)
