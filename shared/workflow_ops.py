"""A submitted workflow's rules: the body validated whole into a ``WorkflowPlan`` (each step
with the very rules of a task, ``shared/submit.py``, and the shape checked by
``domain.workflow``), or a ``SubmitError`` naming the field and the steps at fault."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import msgspec

from taskstream.shared.config import TaskDefaults
from taskstream.shared.domain import NewTask
from taskstream.shared.domain import workflow as shape
from taskstream.shared.ids import new_id
from taskstream.shared.models import canonical_encoder
from taskstream.shared.submit import SubmitError, convert_task, describe, new_task
from taskstream.shared.workflow_models import StepOptions, WorkflowRequest

_STEP_FIELDS = ("name", "depends_on", "on_parent_failure")


class PlannedStep(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    task: NewTask
    parents: list[str]
    on_parent_failure: str


class WorkflowPlan(msgspec.Struct, frozen=True, kw_only=True):
    """A validated workflow ready to insert, its steps in submission order."""

    id: uuid.UUID
    name: str | None
    idempotency_key: str | None
    request_hash: bytes | None
    steps: list[PlannedStep]

    def edges(self) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
        """(parent task ids, child task ids), one pair per dependency."""
        ids = {s.name: s.task.id for s in self.steps}
        pairs = [(ids[p], s.task.id) for s in self.steps for p in dict.fromkeys(s.parents)]
        return [p for p, _ in pairs], [c for _, c in pairs]


def plan(
    body: Any,
    defaults: TaskDefaults,
    *,
    max_steps: int,
    trace_context: str | None = None,
) -> WorkflowPlan:
    """Validate a decoded ``POST /v1/workflows`` body whole; nothing is written on error."""
    try:
        req = msgspec.convert(body, WorkflowRequest)
    except msgspec.ValidationError as exc:
        raise describe(exc) from None
    if not req.steps:
        raise SubmitError("a workflow needs at least one step", "steps")
    if len(req.steps) > max_steps:
        raise SubmitError(
            f"at most {max_steps} steps per workflow, got {len(req.steps)}",
            "steps",
            code="too_large",
            status=413,
        )
    steps: list[PlannedStep] = []
    for i, item in enumerate(req.steps):
        prefix = f"steps[{i}]"
        if not isinstance(item, dict):
            raise SubmitError("a step is an object (a task body with a name)", prefix)
        options = {k: item[k] for k in _STEP_FIELDS if k in item}
        task_body = {k: v for k, v in item.items() if k not in _STEP_FIELDS}
        try:
            opts = msgspec.convert(options, StepOptions)
        except msgspec.ValidationError as exc:
            raise describe(exc, prefix) from None
        task_req = convert_task(task_body, prefix)
        if task_req.idempotency_key is not None:
            raise SubmitError(
                "a step takes no idempotency_key: give the workflow one",
                f"{prefix}.idempotency_key",
            )
        if task_req.unique is not None:
            raise SubmitError("a step cannot be a unique task", f"{prefix}.unique")
        if opts.depends_on and (task_req.run_at is not None or task_req.delay_ms):
            raise SubmitError(
                f"step {opts.name!r} has parents: it starts when they end, so it takes no "
                "run_at or delay_ms",
                f"{prefix}.{'run_at' if task_req.run_at is not None else 'delay_ms'}",
            )
        try:
            task = new_task(task_req, defaults, trace_context=trace_context)
        except SubmitError as exc:
            field = f"{prefix}.{exc.field}" if exc.field else prefix
            raise SubmitError(exc.message, field) from None
        steps.append(
            PlannedStep(
                name=opts.name,
                task=task,
                parents=list(dict.fromkeys(opts.depends_on)),
                on_parent_failure=opts.on_parent_failure,
            )
        )
    seen: dict[str, int] = {}
    for i, s in enumerate(steps):
        if s.name in seen:
            raise SubmitError(
                f"two steps are named {s.name!r} (steps {seen[s.name]} and {i})",
                f"steps[{i}].name",
            )
        seen[s.name] = i
    try:
        shape.check({s.name: s.parents for s in steps})
    except shape.ShapeError as exc:
        raise SubmitError(exc.message, exc.field) from None
    digest = (
        hashlib.sha256(canonical_encoder.encode(body)).digest()
        if req.idempotency_key is not None
        else None
    )
    return WorkflowPlan(
        id=new_id(),
        name=req.name,
        idempotency_key=req.idempotency_key,
        request_hash=digest,
        steps=steps,
    )
