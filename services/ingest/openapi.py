"""The OpenAPI document of the ingest API, generated from the msgspec models.

A test checks that every route the app serves is described here and nothing else is.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from taskstream.shared.domain import Task
from taskstream.shared.models import BatchRequest, ErrorBody, GoTaskRequest, TaskList, TaskRequest

REF = "#/components/schemas/{name}"


class GoTaskResponse(msgspec.Struct, frozen=True):
    task_id: str
    status: str


class SubmittedTask(Task, frozen=True, kw_only=True):
    """A task as a submit answers it: ``duplicate`` is true (and the status 200) when a task
    holding the same unique identity was found instead of creating one."""

    duplicate: bool = False


class BatchResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str | None = None
    status: str | None = None
    created: bool | None = None
    duplicate: bool | None = None
    task: Task | None = None
    error: Any = None


class BatchResponse(msgspec.Struct, frozen=True):
    results: list[BatchResult]


def _json(name: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": REF.format(name=name)}}}}


def _resp(status: str, description: str, name: str = "ErrorBody") -> dict[str, Any]:
    return {status: {"description": description, **_json(name)}}


ERRORS = {
    **_resp("400", "Malformed JSON or bad parameter"),
    **_resp("422", "Body does not validate; `field` names the offending field"),
    **_resp("503", "Postgres or Redis unreachable; nothing was stored"),
}
UUID = {"type": "string", "format": "uuid", "pattern": "^[0-9a-fA-F-]{36}$"}


TEXT = {"type": "string", "pattern": "^[^\\u0000]*$"}  # free text: anything but NUL


def optional(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: given empty (``?cursor=``), it counts as absent."""
    return {"anyOf": [schema, {"type": "string", "maxLength": 0}]}


TASK_ID = [{"name": "id", "in": "path", "required": True, "schema": UUID}]


@functools.cache
def spec() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        [
            TaskRequest,
            BatchRequest,
            GoTaskRequest,
            Task,
            SubmittedTask,
            TaskList,
            ErrorBody,
            GoTaskResponse,
            BatchResponse,
        ],
        ref_template=REF,
    )
    from taskstream.shared.domain import PRIORITIES, STATUSES

    query = [
        {"name": n, "in": "query", "required": False, "schema": optional(schema)}
        for n, schema in (
            ("status", {"type": "string", "enum": list(STATUSES)}),
            ("type", TEXT),
            ("priority", {"type": "string", "enum": list(PRIORITIES)}),
            ("cursor", UUID),
            ("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
        )
    ]
    paths: dict[str, Any] = {
        "/v1/tasks": {
            "post": {
                "summary": "Submit a task",
                "requestBody": {"required": True, **_json("TaskRequest")},
                "responses": {
                    **_resp("201", "Created", "Task"),
                    **_resp(
                        "200",
                        "Same idempotency key and body: the original task; or, with "
                        "`duplicate: true`, the task holding the same unique identity",
                        "SubmittedTask",
                    ),
                    **_resp("409", "Same idempotency key, different body"),
                    **_resp("413", "Body too large"),
                    **ERRORS,
                },
            },
            "get": {
                "summary": "List tasks, newest first, with a cursor",
                "parameters": query,
                "responses": {**_resp("200", "A page of tasks", "TaskList"), **ERRORS},
            },
        },
        "/v1/tasks/batch": {
            "post": {
                "summary": "Submit many tasks; one result per task, in order",
                "requestBody": {"required": True, **_json("BatchRequest")},
                "responses": {
                    **_resp("200", "One result per task", "BatchResponse"),
                    **_resp("413", "Too many tasks or body too large"),
                    **ERRORS,
                },
            }
        },
        "/v1/tasks/{id}": {
            "get": {
                "summary": "One task, with its result once it succeeded; with `wait`, answered "
                "as soon as it has ended (succeeded, dead or cancelled) or as it stands after "
                "`wait` seconds",
                "parameters": [
                    *TASK_ID,
                    {
                        "name": "wait",
                        "in": "query",
                        "required": False,
                        "description": "seconds to wait for the task to end, more than 0, at "
                        "most 60",
                        "schema": optional(
                            {"type": "number", "exclusiveMinimum": 0, "maximum": 60}
                        ),
                    },
                ],
                "responses": {
                    **_resp("200", "The task", "Task"),
                    **_resp("404", "No such task"),
                    **ERRORS,
                },
            }
        },
        "/v1/tasks/{id}/cancel": {
            "post": {
                "summary": "Cancel a task that has not started",
                "parameters": TASK_ID,
                "responses": {
                    **_resp("200", "Cancelled", "Task"),
                    **_resp("404", "No such task"),
                    **_resp("409", "Running or finished: not cancellable"),
                    **ERRORS,
                },
            }
        },
        "/tasks": {
            "post": {
                "summary": "The Go scheduler's submit route (compatibility)",
                "requestBody": {"required": True, **_json("GoTaskRequest")},
                "responses": {
                    **_resp("202", "Queued", "GoTaskResponse"),
                    **_resp("200", "Duplicate idempotency key", "GoTaskResponse"),
                    **_resp("409", "Same idempotency key, different body"),
                    **ERRORS,
                },
            }
        },
        "/addJob": {
            "post": {
                "summary": "The seed scheduler's submit route: the Go scheduler's body and "
                "answers (as POST /tasks)",
                "requestBody": {"required": True, **_json("GoTaskRequest")},
                "responses": {
                    **_resp("202", "Queued", "GoTaskResponse"),
                    **_resp("200", "Duplicate idempotency key", "GoTaskResponse"),
                    **_resp("409", "Same idempotency key, different body"),
                    **ERRORS,
                },
            }
        },
        "/healthz": {
            "get": {"summary": "Process alive", "responses": {"200": {"description": "ok"}}}
        },
        "/readyz": {
            "get": {
                "summary": "Redis and Postgres reachable",
                "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}},
            }
        },
        "/metrics": {
            "get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text"}}}
        },
        "/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": {"description": "JSON"}}}
        },
    }
    # What msgspec cannot say of TaskRequest: a payload is any JSON without NUL (Postgres's
    # jsonb cannot hold it), and run_at and delay_ms are one or the other.
    components["JsonValue"] = {
        "description": "Any JSON value whose strings (keys included) hold no NUL character.",
        "anyOf": [
            TEXT,
            {"type": ["number", "boolean", "null"]},
            {"type": "array", "items": {"$ref": REF.format(name="JsonValue")}},
            {
                "type": "object",
                "propertyNames": TEXT,
                "additionalProperties": {"$ref": REF.format(name="JsonValue")},
            },
        ],
    }
    for name in ("TaskRequest", "GoTaskRequest"):
        components[name]["properties"]["payload"] = {"$ref": REF.format(name="JsonValue")}
    # A unique task holds its identity at least until it ends: its states list every status
    # before the end (the statuses after it are optional).
    from taskstream.shared.domain.unique import REQUIRED

    components["UniqueOptions"]["properties"]["states"]["anyOf"][0]["allOf"] = [
        {"contains": {"const": status}} for status in REQUIRED
    ]
    components["TaskRequest"]["not"] = {
        "properties": {"run_at": {"type": "string"}, "delay_ms": {"type": "integer"}},
        "required": ["run_at", "delay_ms"],
    }
    ops_paths, ops_components = _ops()
    paths.update(ops_paths)
    components.update(ops_components)
    schedule_paths, schedule_components = _schedules()
    paths.update(schedule_paths)
    components.update(schedule_components)
    workflow_paths, workflow_components = _workflows(components["TaskRequest"])
    paths.update(workflow_paths)
    components.update(workflow_components)
    access_paths, access_components = _access()
    paths.update(access_paths)
    components.update(access_components)
    _secure(paths)
    return {
        "openapi": "3.1.0",
        "info": {"title": "taskstream ingest", "version": "1"},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": SECURITY_SCHEMES},
        "security": [{"bearer": []}],
    }


SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`ts_live_…`, from `taskstream keys create` or "
        "`POST /v1/keys`) or a JWT signed with the configured algorithm (`JWT_ALGORITHM`), "
        "whose `JWT_TENANT_CLAIM` names the tenant and `JWT_SCOPES_CLAIM` holds the scopes. "
        "Each operation names the scope it needs (`x-scope`); `admin` satisfies every scope, "
        "and an admin may act for another tenant with the header `X-Taskstream-Tenant`. With "
        "`AUTH_MODE=off` nothing is checked.",
    }
}


def _secure(paths: dict[str, Any]) -> None:
    """Every operation's scope from the one table (``auth.SCOPES``): public ones take no
    credential, the others say which scope they need and answer 401 and 403."""
    from taskstream.services.ingest import auth
    from taskstream.shared.domain.access import PUBLIC

    for path, operations in paths.items():
        for method, operation in operations.items():
            scope = auth.SCOPES.get((method.upper(), path))
            if scope in (PUBLIC, auth.METRICS_SCOPED):
                operation["security"] = []
                continue
            operation["x-scope"] = scope
            operation["responses"].update(
                {
                    **_resp("401", "No credential, or one that is unknown, revoked or expired"),
                    **_resp("403", f"The credential lacks the {scope!r} scope"),
                }
            )


def _access() -> tuple[dict[str, Any], dict[str, Any]]:
    """The admin routes (keys) and their schemas."""
    from taskstream.shared.access_models import (
        KeyCreated,
        KeyList,
        KeyRequest,
        LimitList,
        LimitRequest,
        TenantList,
        TenantRequest,
    )
    from taskstream.shared.domain.access import (
        TENANT_PATTERN,
        ApiKey,
        ConcurrencyLimit,
        TenantLimits,
    )

    _, components = msgspec.json.schema_components(
        [KeyRequest, KeyCreated, KeyList, ApiKey, TenantRequest, TenantLimits, TenantList,
         LimitRequest, LimitList, ConcurrencyLimit],
        ref_template=REF,
    )  # fmt: skip
    cap = [
        {"name": "kind", "in": "path", "required": True,
         "schema": {"type": "string", "enum": ["type", "tenant"]}},
        {"name": "name", "in": "path", "required": True,
         "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]{0,62}$"},
         "description": "a task type, or a tenant (for fuzzing: names both kinds allow)"},
    ]  # fmt: skip
    tenant_name = [
        {"name": "name", "in": "path", "required": True,
         "schema": {"type": "string", "pattern": TENANT_PATTERN}}
    ]  # fmt: skip
    key_id = [{"name": "id", "in": "path", "required": True, "schema": UUID}]
    paths: dict[str, Any] = {
        "/v1/keys": {
            "get": {
                "summary": "API keys (never the keys themselves), newest first",
                "parameters": [
                    {
                        "name": "revoked",
                        "in": "query",
                        "required": False,
                        "schema": optional({"type": "string", "enum": ["true", "false"]}),
                        "description": "true: revoked keys too",
                    }
                ],
                "responses": {
                    **_resp("200", "The keys", "KeyList"),
                    **_resp("400", "Bad parameter"),
                    **_resp("503", "Postgres unreachable"),
                },
            },
            "post": {
                "summary": "Create an API key: the answer is the only time it is shown",
                "requestBody": {"required": True, **_json("KeyRequest")},
                "responses": {
                    **_resp("201", "Created", "KeyCreated"),
                    **_resp("400", "Malformed JSON"),
                    **_resp("422", "Body does not validate; `field` names the offending field"),
                    **_resp("503", "Postgres unreachable"),
                },
            },
        },
        "/v1/limits": {
            "get": {
                "summary": "Concurrency caps: at most max_running tasks of a type, or of a "
                "tenant, running at once across every executor",
                "responses": {
                    **_resp("200", "The caps", "LimitList"),
                    **_resp("503", "Postgres unreachable"),
                },
            }
        },
        "/v1/limits/{kind}/{name}": {
            "put": {
                "summary": "Set a concurrency cap (executors obey it within LIMITS_POLL_MS); "
                "a task over it waits, using no attempt, until a slot frees",
                "parameters": cap,
                "requestBody": {"required": True, **_json("LimitRequest")},
                "responses": {
                    **_resp("200", "Stored", "ConcurrencyLimit"),
                    **_resp("400", "Malformed JSON or a bad kind or name"),
                    **_resp("422", "Body does not validate; `field` names the offending field"),
                    **_resp("503", "Postgres unreachable"),
                },
            },
            "delete": {
                "summary": "Remove a concurrency cap (its waiting tasks are released)",
                "parameters": cap,
                "responses": {
                    **_resp("200", "Removed", "ConcurrencyLimit"),
                    **_resp("400", "A bad kind or name"),
                    **_resp("404", "No such cap"),
                    **_resp("503", "Postgres unreachable"),
                },
            },
        },
        "/v1/tenants": {
            "get": {
                "summary": "Tenants with limits: rate, burst, in-flight quota (with the tasks "
                "counted in flight), payload cap, share weight",
                "responses": {
                    **_resp("200", "The tenants", "TenantList"),
                    **_resp("503", "Postgres unreachable"),
                },
            }
        },
        "/v1/tenants/{name}": {
            "put": {
                "summary": "Set a tenant's limits (replacing them; an absent limit is none). "
                "Other ingest processes apply them within LIMITS_CACHE_MS",
                "parameters": tenant_name,
                "requestBody": {"required": True, **_json("TenantRequest")},
                "responses": {
                    **_resp("200", "Stored", "TenantLimits"),
                    **_resp("400", "Malformed JSON or a bad tenant name"),
                    **_resp("404", "Acting for another tenant"),
                    **_resp("422", "Body does not validate; `field` names the offending field"),
                    **_resp("503", "Postgres unreachable"),
                },
            }
        },
        "/v1/keys/{id}": {
            "delete": {
                "summary": "Revoke an API key at once (other ingest processes within "
                "API_KEY_CACHE_MS)",
                "parameters": key_id,
                "responses": {
                    **_resp("200", "Revoked", "ApiKey"),
                    **_resp("404", "No such key"),
                    **_resp("400", "Bad parameter"),
                    **_resp("503", "Postgres unreachable"),
                },
            }
        },
    }
    return paths, components


def _ops() -> tuple[dict[str, Any], dict[str, Any]]:
    """The operator routes (services/ingest/ops_routes.py) and their schemas."""
    from taskstream.shared.domain import PRIORITIES
    from taskstream.shared.ops import ConsumerList
    from taskstream.shared.ops_models import (
        DeadLetterPage,
        DlqResult,
        FailedJobs,
        PendingList,
        Queues,
        ReplayRequest,
        TaskHistory,
    )

    _, components = msgspec.json.schema_components(
        [
            Queues,
            PendingList,
            TaskHistory,
            DeadLetterPage,
            ReplayRequest,
            DlqResult,
            ConsumerList,
            FailedJobs,
        ],
        ref_template=REF,
    )

    def query(*names: tuple[str, Any, str]) -> list[dict[str, Any]]:
        return [
            {
                "name": n,
                "in": "query",
                "required": False,
                "schema": optional({"type": t} if isinstance(t, str) else t),
                "description": d,
            }
            for n, t, d in names
        ]

    bad_params = _resp("400", "Bad parameter; `field` names it")
    unavailable = _resp("503", "Postgres or Redis unreachable")
    priority = {
        "name": "priority",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": ["critical", "high", "default", "low"]},
    }
    dlq_filter = query(
        (
            "priority",
            {"type": "string", "enum": list(PRIORITIES)},
            "critical, high, default or low",
        ),
        ("type", TEXT, "task type"),
        ("reason", TEXT, "why it died: attempts_exhausted, non_retryable, unknown_type…"),
        ("error", TEXT, "case-insensitive substring of the error's type or message"),
        ("since", {"type": "string", "format": "date-time"}, "died at or after (with a zone)"),
        ("until", {"type": "string", "format": "date-time"}, "died before (with a zone)"),
        (
            "cursor",
            {"type": "string", "format": "dlq-cursor"},
            "next_cursor of the previous page (opaque)",
        ),
        ("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "1-500, default 50"),
    )
    paths: dict[str, Any] = {
        "/v1/queues": {
            "get": {
                "summary": "Per priority: stream length, lag, pending, consumers, oldest pending "
                "and undelivered ages (Redis); retries and delayed tasks waiting, dead letters "
                "(Postgres)",
                "responses": {**_resp("200", "One entry per priority", "Queues"), **unavailable},
            }
        },
        "/v1/queues/{priority}/pending": {
            "get": {
                "summary": "Pending (delivered, unacknowledged) entries, oldest first, joined "
                "with their tasks (XPENDING)",
                "parameters": [
                    priority,
                    *query(
                        ("consumer", TEXT, "only this consumer's entries"),
                        (
                            "min_idle_ms",
                            {"type": "integer", "minimum": 0, "maximum": 31_536_000_000},
                            "only entries idle at least this long",
                        ),
                        ("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "1-1000"),
                    ),
                ],
                "responses": {
                    **_resp("200", "Pending entries", "PendingList"),
                    **bad_params,
                    **unavailable,
                },
            }
        },
        "/v1/tasks/{id}/history": {
            "get": {
                "summary": "A task, its failed attempts, its latest attempt, its dead letter "
                "and its pending entry",
                "parameters": TASK_ID,
                "responses": {
                    **_resp("200", "The history", "TaskHistory"),
                    **_resp("404", "No such task"),
                    **bad_params,
                    **unavailable,
                },
            }
        },
        "/v1/dlq": {
            "get": {
                "summary": "Dead letters, newest first, filtered, with a cursor",
                "parameters": dlq_filter,
                "responses": {
                    **_resp("200", "A page of dead letters", "DeadLetterPage"),
                    **bad_params,
                    **unavailable,
                },
            }
        },
        "/v1/dlq/replay": {
            "post": {
                "summary": "Replay dead letters: exactly one of `ids`, `filter` or `all`. Each "
                "task is queued with fresh attempts (its history is kept) and gets one new "
                "entry. `dry_run` defaults to false: the API acts (the CLI shows a dry run "
                "unless given --yes); with `dry_run: true` nothing changes",
                "requestBody": {"required": True, **_json("ReplayRequest")},
                "responses": {
                    **_resp("200", "What was (or would be) replayed", "DlqResult"),
                    **_resp("400", "Malformed JSON"),
                    **_resp("422", "Body does not validate; `field` names the offending field"),
                    **unavailable,
                },
            }
        },
        "/v1/dlq/{id}": {
            "delete": {
                "summary": "Purge one dead letter: the record goes, the task stays dead with its "
                "history (GET /v1/tasks/{id}/history)",
                "parameters": TASK_ID,
                "responses": {
                    **_resp("200", "Purged", "DlqResult"),
                    **_resp("404", "Not in the dead letters"),
                    **bad_params,
                    **unavailable,
                },
            }
        },
        "/failedJobs": {
            "get": {
                "summary": "The seed scheduler's dead-letter route: numbered pages, newest first",
                "parameters": query(
                    (
                        "page",
                        {"type": "integer", "minimum": 1, "maximum": 100_000},
                        "1-based page number, default 1",
                    ),
                    (
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 100},
                        "1-100, default 20; page * limit at most 100000",
                    ),
                ),
                "responses": {
                    **_resp("200", "A page of dead letters", "FailedJobs"),
                    **bad_params,
                    **unavailable,
                },
            }
        },
        "/v1/consumers": {
            "get": {
                "summary": "Consumers of the executors' group per stream: pending, idle",
                "responses": {
                    **_resp("200", "Consumers", "ConsumerList"),
                    **unavailable,
                },
            }
        },
    }
    return paths, components


def _schedules() -> tuple[dict[str, Any], dict[str, Any]]:
    """The schedule routes (services/ingest/routes/schedules.py), the queue pause routes, and
    their schemas."""
    from taskstream.shared.domain.schedule import NAME_PATTERN
    from taskstream.shared.schedule_models import (
        Deleted,
        NoteRequest,
        PauseList,
        PauseView,
        QueuePauseRequest,
        ScheduleList,
        ScheduleRequest,
        ScheduleTask,
        ScheduleView,
        TriggerResult,
    )

    _, components = msgspec.json.schema_components(
        [
            ScheduleRequest,
            ScheduleTask,
            ScheduleView,
            ScheduleList,
            TriggerResult,
            Deleted,
            NoteRequest,
            QueuePauseRequest,
            PauseView,
            PauseList,
        ],
        ref_template=REF,
    )
    components["ScheduleTask"]["properties"]["payload"] = {"$ref": REF.format(name="JsonValue")}
    components["ScheduleView"]["properties"]["task"] = {"$ref": REF.format(name="ScheduleTask")}
    name = [
        {
            "name": "name",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": NAME_PATTERN, "minLength": 1, "maxLength": 200},
        }
    ]
    missing = _resp("404", "No such schedule")
    note_body = {"required": False, **_json("NoteRequest")}
    paths: dict[str, Any] = {
        "/v1/schedules": {
            "get": {
                "summary": "Every schedule, by name, with its next run, last run and counts",
                "responses": {**_resp("200", "The schedules", "ScheduleList"), **ERRORS},
            }
        },
        "/v1/schedules/{name}": {
            "put": {
                "summary": "Create or replace a schedule (idempotent: the same body again "
                "changes nothing). A bad cron expression, time zone or duration is a 422 "
                "naming the field",
                "parameters": name,
                "requestBody": {"required": True, **_json("ScheduleRequest")},
                "responses": {
                    **_resp("201", "Created", "ScheduleView"),
                    **_resp("200", "Replaced, or unchanged (`change` says)", "ScheduleView"),
                    **ERRORS,
                },
            },
            "get": {
                "summary": "One schedule: its next runs, its latest runs and their tasks, "
                "counts of runs enqueued, caught up, skipped, missed and triggered",
                "parameters": name,
                "responses": {**_resp("200", "The schedule", "ScheduleView"), **missing, **ERRORS},
            },
            "delete": {
                "summary": "Delete a schedule and its runs (the tasks it made stay)",
                "parameters": name,
                "responses": {**_resp("200", "Deleted", "Deleted"), **missing, **ERRORS},
            },
        },
        "/v1/schedules/{name}/pause": {
            "post": {
                "summary": "Pause a schedule, with a note: nothing fires and nothing is "
                "counted missed until it is resumed",
                "parameters": name,
                "requestBody": note_body,
                "responses": {**_resp("200", "Paused", "ScheduleView"), **missing, **ERRORS},
            }
        },
        "/v1/schedules/{name}/resume": {
            "post": {
                "summary": "Resume a schedule from its next tick",
                "parameters": name,
                "requestBody": note_body,
                "responses": {**_resp("200", "Resumed", "ScheduleView"), **missing, **ERRORS},
            }
        },
        "/v1/schedules/{name}/trigger": {
            "post": {
                "summary": "Run a schedule now, whatever its overlap policy and pause",
                "parameters": name,
                "responses": {
                    **_resp("201", "A run was made", "TriggerResult"),
                    **missing,
                    **ERRORS,
                },
            }
        },
        "/v1/queues/pause": {
            "post": {
                "summary": "Pause a priority or a task type cluster-wide (exactly one of "
                "`priority`, `type`): executors stop starting its tasks, which wait queued "
                "with no attempt used; running ones finish",
                "requestBody": {"required": True, **_json("QueuePauseRequest")},
                "responses": {**_resp("200", "Paused", "PauseView"), **ERRORS},
            }
        },
        "/v1/queues/resume": {
            "post": {
                "summary": "Resume a paused priority or task type",
                "requestBody": {"required": True, **_json("QueuePauseRequest")},
                "responses": {**_resp("200", "Resumed (or was not paused)", "PauseView"), **ERRORS},
            }
        },
        "/v1/queues/pauses": {
            "get": {
                "summary": "Every paused queue, with the tasks parked under each paused type",
                "responses": {**_resp("200", "The pauses", "PauseList"), **ERRORS},
            }
        },
    }
    return paths, components


def _workflows(task: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The workflow routes (services/ingest/routes/workflows.py) and their schemas: a step is
    a task body (``task``'s schema) with a name, its dependencies and its failure policy."""
    import copy

    from taskstream.shared.workflow_models import (
        WORKFLOW_STATES,
        CancelledWorkflow,
        StepOptions,
        WorkflowList,
        WorkflowRequest,
        WorkflowView,
    )

    _, components = msgspec.json.schema_components(
        [WorkflowRequest, WorkflowView, WorkflowList, CancelledWorkflow, StepOptions],
        ref_template=REF,
    )
    options = components.pop("StepOptions")
    step = copy.deepcopy(task)
    step["properties"].update(options["properties"])
    step["required"] = sorted({*step.get("required", []), *options["required"]})
    # A step takes no idempotency key (the workflow does) and is never a unique task.
    del step["properties"]["idempotency_key"], step["properties"]["unique"]
    step.pop("not", None)
    step["title"] = "WorkflowStep"
    step["description"] = "A task body with a name, depends_on and on_parent_failure."
    components["WorkflowStep"] = step
    components["WorkflowRequest"]["properties"]["steps"] = {
        "type": "array",
        "items": {"$ref": REF.format(name="WorkflowStep")},
        "minItems": 1,
    }
    missing = _resp("404", "No such workflow")
    query = [
        {"name": n, "in": "query", "required": False, "schema": optional(schema)}
        for n, schema in (
            ("status", {"type": "string", "enum": list(WORKFLOW_STATES)}),
            ("cursor", UUID),
            ("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
        )
    ]
    paths: dict[str, Any] = {
        "/v1/workflows": {
            "post": {
                "summary": "Submit a workflow (a DAG of steps), validated whole: an unknown "
                "dependency or a cycle is a 422 naming the steps",
                "requestBody": {"required": True, **_json("WorkflowRequest")},
                "responses": {
                    **_resp("201", "Created: the workflow and its steps", "WorkflowView"),
                    **_resp("200", "Same idempotency key and body: the original", "WorkflowView"),
                    **_resp("409", "Same idempotency key, different body"),
                    **_resp("413", "More steps than WORKFLOW_MAX_STEPS, or body too large"),
                    **ERRORS,
                },
            },
            "get": {
                "summary": "List workflows by state, newest first, with a cursor",
                "parameters": query,
                "responses": {**_resp("200", "A page of workflows", "WorkflowList"), **ERRORS},
            },
        },
        "/v1/workflows/{id}": {
            "get": {
                "summary": "One workflow with its steps, states, results and timing",
                "parameters": TASK_ID,
                "responses": {
                    **_resp("200", "The workflow", "WorkflowView"),
                    **missing,
                    **ERRORS,
                },
            }
        },
        "/v1/workflows/{id}/cancel": {
            "post": {
                "summary": "Cancel every step not yet started",
                "parameters": TASK_ID,
                "responses": {
                    **_resp("200", "The steps cancelled and the workflow", "CancelledWorkflow"),
                    **missing,
                    **ERRORS,
                },
            }
        },
    }
    return paths, components
