"""The ingest API's routes, one module per resource: ``tasks`` (submit, read, list, cancel, the
Go scheduler's route), ``queues`` (queues, pending entries, consumers, task history, queue
pauses), ``dlq`` (dead letters), ``schedules`` and ``system`` (health, readiness, metrics, the
OpenAPI document)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Route = tuple[str, str, Handler]

# A task id in a path: only a UUID matches, so ``/v1/tasks/batch`` is never read as an id,
# and anything else is no such route (404).
ID = "[0-9a-fA-F-]{36}"
