"""``taskstream.Client``: the API over HTTP, for code that does not run an event loop."""

from __future__ import annotations

import builtins
import datetime as dt
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from taskstream.shared.client import flows, http, workflows
from taskstream.shared.client.errors import ApiError
from taskstream.shared.client.flows import Answer, Call, Flow, NoAnswer, Settings, Sleep
from taskstream.shared.client.models import (
    DeadLetter,
    DlqResult,
    PendingList,
    Queues,
    RetryPolicy,
    Task,
)
from taskstream.shared.schedule_models import ScheduleList, ScheduleView, TriggerResult

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from taskstream.shared.client.models import SubmitOptions

T = TypeVar("T")


class Client:
    """A client of the taskstream API (``with Client() as client: …``).

    ``url`` and ``api_key`` default to ``TASKSTREAM_URL`` and ``TASKSTREAM_API_KEY``; the key is
    sent as ``Authorization: Bearer``. ``timeout`` (seconds) bounds each request; ``retry``
    says how requests that got no answer or a 502/503/504 are retried (every submit carries an
    idempotency key, so a retry never makes a second task). ``batch_size`` is how many tasks
    ``submit_many`` sends per request. Errors are ``taskstream.ApiError`` subclasses:
    ``NotFound``, ``Conflict``, ``ValidationError`` (naming the field), ``RateLimited``,
    ``Unavailable``… Thread-safe, like the ``httpx.Client`` beneath it.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        batch_size: int = flows.BATCH_CHUNK,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = http.base_url(url)
        self.batch_size = batch_size
        self._timeout = timeout
        self._settings = Settings(retry or RetryPolicy())
        self._http = httpx.Client(
            base_url=self.url, headers=http.headers(api_key), transport=transport
        )
        self.schedules = Schedules(self)
        self.dlq = DeadLetters(self)

    def submit(self, type: str, payload: Any = None, **options: Unpack[SubmitOptions]) -> Task:
        """Submit one task; its ``Task`` as created (or as it was, when its idempotency key
        was used before with the same request)."""
        return self._run(flows.submit(self._settings, type, payload, options))

    def submit_many(self, tasks: Iterable[Mapping[str, Any]]) -> builtins.list[Task | ApiError]:
        """Submit ``{"type", "payload"?, <option>…}`` mappings in batches: one result per task,
        in order, each a ``Task`` or that task's own error (never raised for the batch)."""
        return self._run(flows.submit_many(self._settings, tasks, self.batch_size))

    def get(self, task: str | uuid.UUID) -> Task:
        return self._run(flows.get(self._settings, task))

    def wait(self, task: str | uuid.UUID, timeout: float | None = 60.0) -> Task:
        """Block until the task ends: the succeeded ``Task``; ``TaskFailed`` (with its recorded
        error) when it ends dead, ``TaskCancelled`` when cancelled, ``WaitTimeout`` after
        ``timeout`` seconds (None: no limit)."""
        return self._run(flows.wait(self._settings, task, timeout))

    def cancel(self, task: str | uuid.UUID) -> Task:
        """Cancel a scheduled, queued or retrying task (``Conflict`` once it runs or ended)."""
        return self._run(flows.cancel(self._settings, task))

    def list(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        priority: str | None = None,
        page_size: int = flows.PAGE_SIZE,
    ) -> Iterator[Task]:
        """Every task matching the filters, newest first, read a page at a time as iterated."""
        filters = {"status": status, "type": type, "priority": priority}
        cursor: str | None = None
        while True:
            tasks, cursor = self._run(flows.task_page(self._settings, filters, cursor, page_size))
            yield from tasks
            if cursor is None:
                return

    def list_page(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        priority: str | None = None,
        cursor: str | None = None,
        limit: int = flows.PAGE_SIZE,
    ) -> tuple[builtins.list[Task], str | None]:
        """One page of tasks, newest first, and the cursor of the next (None at the end)."""
        filters = {"status": status, "type": type, "priority": priority}
        return self._run(flows.task_page(self._settings, filters, cursor, limit))

    def queues(self) -> Queues:
        """Per priority: lag, pending, consumers, oldest ages, retries, delayed, dead letters."""
        return self._run(flows.queues(self._settings))

    def pending(
        self,
        priority: str = "default",
        *,
        consumer: str | None = None,
        min_idle_ms: int = 0,
        limit: int = 50,
    ) -> PendingList:
        """The oldest pending (delivered, unacknowledged) entries of one priority's stream,
        with their consumer, idle time, deliveries and task."""
        return self._run(flows.pending(self._settings, priority, consumer, min_idle_ms, limit))

    def submit_workflow(
        self,
        steps: workflows.Dag | Iterable[Mapping[str, Any]],
        *,
        name: str | None = None,
        idempotency_key: str | None = None,
    ) -> workflows.Workflow:
        """Submit a workflow: a ``Dag`` (``taskstream.chain``/``group``/``step``) or the step
        bodies of ``POST /v1/workflows``; the ``Workflow`` with each step's task."""
        return self._run(workflows.submit_workflow(self._settings, steps, name, idempotency_key))

    def get_workflow(self, workflow: str | uuid.UUID) -> workflows.Workflow:
        return self._run(workflows.get_workflow(self._settings, workflow))

    def wait_workflow(
        self, workflow: str | uuid.UUID, timeout: float | None = 60.0
    ) -> workflows.Workflow:
        """Block until the workflow has ended (``state``: succeeded, failed or cancelled);
        ``WorkflowTimeout`` after ``timeout`` seconds (None: no limit)."""
        return self._run(workflows.wait_workflow(self._settings, workflow, timeout))

    def cancel_workflow(self, workflow: str | uuid.UUID) -> workflows.Workflow:
        """Cancel every step not yet started."""
        return self._run(workflows.cancel_workflow(self._settings, workflow))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, flow: Flow[T]) -> T:
        outcome: Answer | NoAnswer | None = None
        while True:
            try:
                step = flow.throw(outcome) if isinstance(outcome, NoAnswer) else flow.send(outcome)
            except StopIteration as stop:
                value: T = stop.value
                return value
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
                outcome = None
            else:
                outcome = self._send(step)

    def _send(self, call: Call) -> Answer | NoAnswer:
        try:
            r = self._http.request(
                call.method,
                call.path,
                params=call.params,
                content=call.body,
                headers=http.request_headers(call),
                timeout=http.timeout(call, self._timeout),
            )
        except httpx.TransportError as exc:
            return http.no_answer(exc)
        return Answer(r.status_code, r.content, r.headers)


class DeadLetters:
    """``client.dlq``: list, replay and purge dead letters."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(
        self,
        *,
        priority: str | None = None,
        type: str | None = None,
        reason: str | None = None,
        error: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        page_size: int = flows.PAGE_SIZE,
    ) -> Iterator[DeadLetter]:
        """Every dead letter matching the filters, a page at a time as iterated."""
        c = self._client
        filters: dict[str, Any] = {"priority": priority, "type": type, "reason": reason}
        filters |= {"error": error, "since": since, "until": until}
        cursor: str | None = None
        while True:
            page, cursor = c._run(flows.dlq_page(c._settings, filters, cursor, page_size))
            yield from page
            if cursor is None:
                return

    def list_page(
        self,
        *,
        priority: str | None = None,
        type: str | None = None,
        reason: str | None = None,
        error: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        cursor: str | None = None,
        limit: int = flows.PAGE_SIZE,
    ) -> tuple[builtins.list[DeadLetter], str | None]:
        """One page of dead letters, newest first, and the cursor of the next."""
        c = self._client
        filters: dict[str, Any] = {"priority": priority, "type": type, "reason": reason}
        filters |= {"error": error, "since": since, "until": until}
        return c._run(flows.dlq_page(c._settings, filters, cursor, limit))

    def replay(
        self,
        ids: Iterable[str | uuid.UUID] | None = None,
        *,
        all: bool = False,
        dry_run: bool = False,
        priority: str | None = None,
        type: str | None = None,
        reason: str | None = None,
        error: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> DlqResult:
        """Put dead letters back on their queues, with fresh attempts: the given ``ids``, the
        ones matching the filters, or ``all=True`` (``dry_run``: only say which)."""
        filters: dict[str, Any] = {"priority": priority, "type": type, "reason": reason}
        filters |= {"error": error, "since": since, "until": until}
        c = self._client
        return c._run(flows.dlq_replay(c._settings, ids, filters, all=all, dry_run=dry_run))

    def purge(self, task: str | uuid.UUID) -> DlqResult:
        """Remove one dead letter (``NotFound`` if it is not one); the task stays dead."""
        return self._client._run(flows.dlq_purge(self._client._settings, task))


class Schedules:
    """``client.schedules``: list, read, create or replace, pause, resume and trigger
    recurring schedules."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self) -> ScheduleList:
        """Every schedule, with its next run, last run and counts."""
        c = self._client
        return c._run(flows.schedules(c._settings))

    def get(self, name: str) -> ScheduleView:
        """One schedule with its next runs and latest runs (``NotFound`` if none)."""
        c = self._client
        return c._run(flows.schedule(c._settings, name))

    def put(self, name: str, spec: Mapping[str, Any]) -> ScheduleView:
        """Create or replace a schedule from a ``PUT /v1/schedules/{name}`` body (``task``,
        ``cron`` or ``every``, ``timezone``, ``overlap``…); ``change`` says what it did."""
        c = self._client
        return c._run(flows.put_schedule(c._settings, name, spec))

    def pause(self, name: str, note: str | None = None) -> ScheduleView:
        c = self._client
        return c._run(flows.schedule_state(c._settings, name, "pause", note))

    def resume(self, name: str, note: str | None = None) -> ScheduleView:
        c = self._client
        return c._run(flows.schedule_state(c._settings, name, "resume", note))

    def trigger(self, name: str) -> TriggerResult:
        """Run a schedule now, whatever its pause and overlap policy."""
        c = self._client
        return c._run(flows.trigger_schedule(c._settings, name))
