"""The OpenAPI document of the ingest API, generated from the msgspec models.

A test checks that every route the app serves is described here and nothing else is.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from shared.models import (
    BatchRequest,
    ErrorBody,
    GoTaskRequest,
    TaskList,
    TaskRequest,
    TaskView,
)

REF = "#/components/schemas/{name}"


class GoTaskResponse(msgspec.Struct, frozen=True):
    task_id: str
    status: str


class BatchResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str | None = None
    status: str | None = None
    created: bool | None = None
    task: TaskView | None = None
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
TASK_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]


@functools.cache
def spec() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        [
            TaskRequest,
            BatchRequest,
            GoTaskRequest,
            TaskView,
            TaskList,
            ErrorBody,
            GoTaskResponse,
            BatchResponse,
        ],
        ref_template=REF,
    )
    query = [
        {"name": n, "in": "query", "required": False, "schema": {"type": t}}
        for n, t in (
            ("status", "string"),
            ("type", "string"),
            ("priority", "string"),
            ("cursor", "string"),
            ("limit", "integer"),
        )
    ]
    paths: dict[str, Any] = {
        "/v1/tasks": {
            "post": {
                "summary": "Submit a task",
                "requestBody": {"required": True, **_json("TaskRequest")},
                "responses": {
                    **_resp("201", "Created", "TaskView"),
                    **_resp("200", "Same idempotency key and body: the original task", "TaskView"),
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
                "summary": "One task",
                "parameters": TASK_ID,
                "responses": {
                    **_resp("200", "The task", "TaskView"),
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
                    **_resp("200", "Cancelled", "TaskView"),
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
    return {
        "openapi": "3.1.0",
        "info": {"title": "taskstream ingest", "version": "1"},
        "paths": paths,
        "components": {"schemas": components},
    }
