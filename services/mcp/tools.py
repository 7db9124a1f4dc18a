"""The MCP tools: each a thin call of the HTTP API through ``taskstream.AsyncClient``,
described for a model, with its input schema from the type hints.

Outputs are bounded: lists come in pages (``limit``, ``next_cursor``), and a long payload,
result, error message or traceback is cut with a note saying how much was left out. An API
error becomes a tool error carrying the API's status, code and message (a missing scope is
``HTTP 403 …``), so the model can read why and correct itself.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from taskstream.shared.client.aio import AsyncClient
from taskstream.shared.client.errors import ApiError

T = TypeVar("T")
TEXT_MAX = 2000  # characters of one payload, result or error text shown to the model
LIST_TEXT_MAX = 400  # the same, for each item of a list
PAGE_MAX = 50

Priority = Literal["critical", "high", "default", "low"]
Status = Literal["scheduled", "queued", "running", "succeeded", "retrying", "dead", "cancelled"]
TaskId = Annotated[str, Field(description="The task's id (a UUID), as submit_task returned it.")]
Limit = Annotated[int, Field(ge=1, le=PAGE_MAX, description="How many to return (a page).")]
Cursor = Annotated[
    str | None, Field(description="next_cursor from the previous page, to continue.")
]


def register(server: MCPServer, api: AsyncClient) -> None:
    """Add every tool to ``server``, calling the API through ``api``."""

    async def submit_task(
        type: Annotated[
            str, Field(description="The task type: the name a handler is registered under.")
        ],
        payload: Annotated[
            dict[str, Any] | None, Field(description="JSON object given to the handler.")
        ] = None,
        priority: Annotated[Priority, Field(description="Which queue; default: default.")] = (
            "default"
        ),
        idempotency_key: Annotated[
            str | None,
            Field(
                description="Makes a retry of this call return the same task instead of a second "
                "one. Leave it out and one is derived from the other arguments, so calling "
                "again with the same arguments never duplicates; give a new key to submit the "
                "same work twice on purpose."
            ),
        ] = None,
        delay_ms: Annotated[
            int | None, Field(ge=0, description="Run no earlier than this many ms from now.")
        ] = None,
        max_attempts: Annotated[
            int | None, Field(ge=1, le=100, description="Attempts before it dead-letters.")
        ] = None,
    ) -> dict[str, Any]:
        """Submit one background task to taskstream (durable: stored in Postgres, then run by an
        executor with retries). Returns the task's id and status; calling again with the same
        arguments (or the same idempotency_key) returns the same task instead of a second one.
        Use get_task with the id to follow it."""
        options: dict[str, Any] = {"priority": priority}
        if delay_ms is not None:
            options["delay_ms"] = delay_ms
        if max_attempts is not None:
            options["max_attempts"] = max_attempts
        key = idempotency_key or derived_key({"type": type, "payload": payload or {}, **options})
        task = await _call(api.submit(type, payload or {}, idempotency_key=key, **options))
        return {"id": str(task.id), "status": task.status, "type": task.type,
                "priority": task.priority, "idempotency_key": key,
                "run_at": _plain(task.run_at)}  # fmt: skip

    async def get_task(task_id: TaskId) -> dict[str, Any]:
        """One task: its status (scheduled, queued, running, succeeded, retrying, dead,
        cancelled), attempts used, times, its result when it succeeded and its last error
        (type, message, traceback head) when it failed. Long values are cut."""
        return _plain(await _call(api.get(_id(task_id))))

    async def list_tasks(
        status: Annotated[Status | None, Field(description="Only tasks in this status.")] = None,
        type: Annotated[str | None, Field(description="Only tasks of this type.")] = None,
        priority: Annotated[Priority | None, Field(description="Only this priority.")] = None,
        limit: Limit = 20,
        cursor: Cursor = None,
    ) -> dict[str, Any]:
        """Tasks, newest first, optionally filtered; pass next_cursor back as cursor for the
        next page (null when there is none). Payloads are left out: use get_task for one."""
        tasks, next_cursor = await _call(
            api.list_page(status=status, type=type, priority=priority, cursor=cursor, limit=limit)
        )
        return {"tasks": [_summary(t) for t in tasks], "next_cursor": next_cursor}

    async def cancel_task(task_id: TaskId) -> dict[str, Any]:
        """Cancel a task that has not started (scheduled, queued or retrying). A running or
        finished task cannot be cancelled: that is an error saying its status."""
        return _summary(await _call(api.cancel(_id(task_id))))

    async def queue_overview() -> dict[str, Any]:
        """Per priority queue: entries waiting (lag), in flight (pending), consumers, the age of
        the oldest waiting and pending entry (ms), retries and delayed tasks waiting, and dead
        letters. Start here to see whether work is flowing."""
        return _plain(await _call(api.queues()))

    async def pending_entries(
        priority: Annotated[Priority, Field(description="Which queue.")] = "default",
        consumer: Annotated[str | None, Field(description="Only this consumer's.")] = None,
        min_idle_ms: Annotated[
            int, Field(ge=0, description="Only entries idle at least this long.")
        ] = 0,
        limit: Annotated[int, Field(ge=1, le=100)] = 20,
    ) -> dict[str, Any]:
        """Entries delivered to an executor and not yet acknowledged (Redis XPENDING), oldest
        first, each with its consumer, idle time, delivery count and task (type, status). An
        entry idle past the visibility timeout is stuck and will be reclaimed."""
        return _plain(
            await _call(
                api.pending(priority, consumer=consumer, min_idle_ms=min_idle_ms, limit=limit)
            )
        )

    async def list_dead_letters(
        priority: Annotated[Priority | None, Field(description="Only this priority.")] = None,
        type: Annotated[str | None, Field(description="Only this task type.")] = None,
        reason: Annotated[
            str | None,
            Field(description="attempts_exhausted, non_retryable, unknown_type or poison."),
        ] = None,
        error: Annotated[
            str | None, Field(description="Text the error's type or message contains.")
        ] = None,
        limit: Limit = 20,
        cursor: Cursor = None,
    ) -> dict[str, Any]:
        """Tasks that failed for good (dead letters), newest death first, with why and their
        last error. replay_dead_letters runs them again."""
        letters, next_cursor = await _call(
            api.dlq.list_page(
                priority=priority, type=type, reason=reason, error=error, cursor=cursor,
                limit=limit,
            )
        )  # fmt: skip
        # Several letters at once: each error's text shorter than get_task shows it.
        return {"dead_letters": bounded(msgspec.to_builtins(letters), LIST_TEXT_MAX),
                "next_cursor": next_cursor}  # fmt: skip

    async def replay_dead_letters(
        task_ids: Annotated[
            list[str] | None, Field(description="These dead letters (task ids), or …")
        ] = None,
        priority: Annotated[Priority | None, Field(description="… those matching.")] = None,
        type: Annotated[str | None, Field(description="… of this type.")] = None,
        reason: Annotated[str | None, Field(description="… with this reason.")] = None,
        error: Annotated[str | None, Field(description="… whose error contains this.")] = None,
        all: Annotated[bool, Field(description="… or every dead letter.")] = False,
        confirm: Annotated[
            bool,
            Field(
                description="false (the default): a dry run that only counts what would be "
                "replayed. true: replay them."
            ),
        ] = False,
    ) -> dict[str, Any]:
        """Run dead-lettered tasks again, with fresh attempts (their history is kept). Name
        them by task_ids, by a filter (priority, type, reason, error), or all. Without
        confirm: true this is a dry run that changes nothing and says how many would be
        replayed: do that first, tell the user the count, then call again with confirm."""
        where = {"priority": priority, "type": type, "reason": reason, "error": error}
        where = {k: v for k, v in where.items() if v is not None}
        if not (task_ids or where or all):
            raise ToolError("name the dead letters: task_ids, a filter, or all: true")
        ids = [_id(t) for t in task_ids] if task_ids else None
        if ids is not None:
            replay = api.dlq.replay(ids, dry_run=not confirm)
        elif where:
            replay = api.dlq.replay(
                dry_run=not confirm, priority=priority, type=type, reason=reason, error=error
            )
        else:
            replay = api.dlq.replay(all=True, dry_run=not confirm)
        result = await _call(replay)
        out = _plain(result)
        out["tasks"] = out["tasks"][:PAGE_MAX]
        return out

    async def list_schedules() -> dict[str, Any]:
        """Every recurring schedule: its state (active, paused with a note, ended), cron or
        interval and time zone, the task it makes, its next run, its last run (tick, outcome,
        task status), and counts of ticks enqueued, caught up, skipped, missed and
        triggered."""
        listed = await _call(api.schedules.list())
        return {"schedules": [_schedule(v) for v in listed.schedules[:PAGE_MAX]],
                "more": len(listed.schedules) > PAGE_MAX}  # fmt: skip

    async def upsert_schedule(
        name: Annotated[
            str,
            Field(
                pattern=r"^[A-Za-z0-9_.:\-]+$",
                max_length=200,
                description="The schedule's name (letters, digits, _ . : -).",
            ),
        ],
        task_type: Annotated[str, Field(description="Type of the task each tick makes.")],
        cron: Annotated[
            str | None,
            Field(
                description="Five cron fields (minute hour day month weekday) or a macro "
                "such as @daily, read in timezone. Give cron or every."
            ),
        ] = None,
        every: Annotated[
            str | None, Field(description="An interval such as 30s, 5m, 1h30m (exact, UTC).")
        ] = None,
        timezone: Annotated[str, Field(description="IANA time zone of cron.")] = "UTC",
        payload: Annotated[
            dict[str, Any] | None, Field(description="JSON object each task gets.")
        ] = None,
        priority: Annotated[Priority, Field(description="Queue of the tasks.")] = "default",
        overlap: Annotated[
            Literal["skip", "buffer_one", "allow", "cancel_previous"],
            Field(description="What a tick does while the previous run is unfinished."),
        ] = "skip",
        catchup: Annotated[
            str, Field(description="How far back missed ticks are still run after downtime.")
        ] = "1h",
        jitter: Annotated[str, Field(description="Random delay added to each tick.")] = "0s",
    ) -> dict[str, Any]:
        """Create a recurring schedule, or replace the one with this name (the same arguments
        again change nothing). Each tick makes one task, exactly once however many watchers
        run. Returns the schedule with its next runs and whether it was created, updated or
        unchanged."""
        spec: dict[str, Any] = {
            "task": {"type": task_type, "payload": payload or {}, "priority": priority},
            "timezone": timezone, "overlap": overlap, "catchup": catchup, "jitter": jitter,
        }  # fmt: skip
        if cron is not None:
            spec["cron"] = cron
        if every is not None:
            spec["every"] = every
        return _schedule(await _call(api.schedules.put(name, spec)))

    async def pause_schedule(
        name: Annotated[str, Field(description="The schedule's name.")],
        note: Annotated[
            str | None, Field(max_length=1000, description="Why (shown to operators).")
        ] = None,
    ) -> dict[str, Any]:
        """Pause a schedule: no tick fires and none is counted missed until resume_schedule.
        Give a note saying why."""
        return _schedule(await _call(api.schedules.pause(name, note)))

    async def resume_schedule(
        name: Annotated[str, Field(description="The schedule's name.")],
    ) -> dict[str, Any]:
        """Resume a paused schedule from its next tick after now (ticks that passed while it
        was paused are not run)."""
        return _schedule(await _call(api.schedules.resume(name)))

    async def submit_workflow(
        steps: Annotated[
            list[WorkflowStepInput],
            Field(
                min_length=1,
                max_length=200,
                description="The steps; each waits for the steps named in its depends_on.",
            ),
        ],
        name: Annotated[str | None, Field(description="A name to find it by.")] = None,
        idempotency_key: Annotated[
            str | None,
            Field(
                description="Makes a retry return the same workflow; derived from the "
                "arguments when left out, so the same call never makes a second one."
            ),
        ] = None,
    ) -> dict[str, Any]:
        """Submit a workflow: tasks that run in dependency order (a DAG). A step starts when
        every step in its depends_on has succeeded; if one fails, the step is cancelled (or
        runs anyway with on_parent_failure: run). Each step's handler sees its parents'
        results. Returns the workflow's id, state and each step's task id; follow it with
        get_workflow."""
        bodies = [_step_body(st) for st in steps]
        key = idempotency_key or derived_key({"workflow": bodies, "name": name})
        made = await _call(api.submit_workflow(bodies, name=name, idempotency_key=key))
        return _workflow(made, key)

    async def get_workflow(
        workflow_id: Annotated[str, Field(description="The workflow's id (a UUID).")],
    ) -> dict[str, Any]:
        """A workflow: its state (running until every step has ended; then succeeded, failed
        or cancelled), steps left, and each step with its parents, state, result once it
        succeeded and last error once it failed (long values cut)."""
        return _workflow(await _call(api.get_workflow(_id(workflow_id))))

    for tool in (
        submit_task,
        get_task,
        list_tasks,
        cancel_task,
        queue_overview,
        pending_entries,
        list_dead_letters,
        replay_dead_letters,
        list_schedules,
        upsert_schedule,
        pause_schedule,
        resume_schedule,
        submit_workflow,
        get_workflow,
    ):
        server.add_tool(tool)


def derived_key(body: dict[str, Any]) -> str:
    """An idempotency key made from the call's arguments: the same call, the same key."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return "mcp-" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def bounded(value: Any, limit: int = TEXT_MAX) -> Any:
    """``value`` with every long string cut, and a payload or result whose JSON is long
    replaced by its beginning and a note."""
    if isinstance(value, str):
        if len(value) <= limit:
            return value
        return f"{value[:limit]}… [cut: {len(value) - limit:,} more characters]"
    if isinstance(value, list):
        return [bounded(v, limit) for v in value]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k in ("payload", "result") and v is not None:
                text = json.dumps(v, ensure_ascii=False)
                if len(text) > limit:
                    out[k] = None
                    out[f"{k}_cut"] = (
                        f"{text[:limit]}… [cut: the {k} is {len(text):,} characters of JSON]"
                    )
                    continue
            out[k] = bounded(v, limit)
        return out
    return value


def _plain(value: Any) -> dict[str, Any] | Any:
    """A client model as the JSON the API sent (raw parts decoded too), bounded."""
    return bounded(msgspec.json.decode(msgspec.json.encode(value)))


class WorkflowStepInput(BaseModel):
    """One step of a workflow: a task (as submit_task takes it) with a name and the steps it
    waits for."""

    name: str = Field(min_length=1, max_length=200, description="Unique within the workflow.")
    type: str = Field(description="The task type.")
    payload: dict[str, Any] = Field(default_factory=dict, description="JSON for the handler.")
    depends_on: list[str] = Field(
        default_factory=list, description="Names of the steps that must succeed first."
    )
    on_parent_failure: Literal["cancel", "run"] = Field(
        "cancel", description="When a parent fails: cancel this step, or run it anyway."
    )
    priority: Priority = "default"
    max_attempts: int | None = Field(None, ge=1, le=100)


def _step_body(step: WorkflowStepInput) -> dict[str, Any]:
    body = step.model_dump(exclude_none=True)
    if not body.get("depends_on"):
        body.pop("depends_on", None)
    return body


def _workflow(view: Any, key: str | None = None) -> dict[str, Any]:
    plain = dict(_plain(view))
    steps = plain.get("steps") or []
    plain["steps"] = [
        {"name": st["name"], "depends_on": st["depends_on"],
         "on_parent_failure": st.get("on_parent_failure"), "cancel_reason": st.get("cancel_reason"),
         "task_id": st["task"]["id"], "status": st["task"]["status"],
         "result": st["task"].get("result"), "last_error": st["task"].get("last_error")}
        for st in steps[:PAGE_MAX]
    ]  # fmt: skip
    plain = dict(bounded(plain, LIST_TEXT_MAX))
    if key is not None:
        plain["idempotency_key"] = key
    return plain


def _schedule(view: Any) -> dict[str, Any]:
    plain = _plain(view)
    plain.pop("runs", None)  # the last run is there; the full history is the console's
    return dict(plain)


def _summary(task: Any) -> dict[str, Any]:
    keep = ("id", "type", "priority", "status", "attempt", "max_attempts", "created_at",
            "finished_at", "last_error")  # fmt: skip
    plain = msgspec.to_builtins(task)
    return dict(bounded({k: plain.get(k) for k in keep}, 300))


def _id(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ToolError(f"not a task id: {text!r} (a UUID is expected)") from None


async def _call(pending: Awaitable[T]) -> T:
    try:
        return await pending
    except ApiError as exc:
        raise ToolError(describe(exc)) from None


def describe(exc: ApiError) -> str:
    """The API's own words: ``HTTP 404 not_found: no task … (field …)``."""
    where = f" (field {exc.field})" if exc.field else ""
    if exc.status is None:
        return f"cannot reach the taskstream API: {exc.message}"
    return f"HTTP {exc.status} {exc.code}: {exc.message}{where}"
