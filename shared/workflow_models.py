"""The workflow API's bodies and views (``POST /v1/workflows`` and what it answers)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

import msgspec

from taskstream.shared.domain import Task
from taskstream.shared.models import IdemKey

StepName = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern="^[^\x00]+$")]
OnParentFailure = Literal["cancel", "run"]
WORKFLOW_STATES: tuple[str, ...] = ("running", "succeeded", "failed", "cancelled")


class WorkflowRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /v1/workflows``: each step is a task body with ``name``, ``depends_on``
    and ``on_parent_failure`` (validated step by step, see ``shared.workflow_ops``)."""

    steps: list[Any]
    name: Annotated[str, msgspec.Meta(max_length=200, pattern="^[^\x00]*$")] | None = None
    idempotency_key: IdemKey | None = None


class StepOptions(msgspec.Struct, frozen=True, kw_only=True):
    """What a step adds to a task body."""

    name: StepName
    depends_on: list[StepName] = msgspec.field(default_factory=list)
    on_parent_failure: OnParentFailure = "cancel"


class StepView(msgspec.Struct, frozen=True, kw_only=True):
    """One step: its name, parents, failure policy, why it was cancelled, and its task."""

    name: str
    depends_on: list[str]
    on_parent_failure: str
    cancel_reason: str | None
    task: Task


class WorkflowView(msgspec.Struct, frozen=True, kw_only=True):
    """A workflow: its state (running until every step has ended; then succeeded, failed or
    cancelled), timing and, unless listed, its steps."""

    id: uuid.UUID
    name: str | None
    state: str
    steps_total: int
    steps_left: int
    created_at: dt.datetime
    finished_at: dt.datetime | None
    cancelled_at: dt.datetime | None
    idempotency_key: str | None = None
    steps: list[StepView] | None = None


class WorkflowList(msgspec.Struct, frozen=True, kw_only=True):
    workflows: list[WorkflowView]
    next_cursor: str | None


class CancelledWorkflow(msgspec.Struct, frozen=True, kw_only=True):
    """What ``POST /v1/workflows/{id}/cancel`` did: the steps it cancelled, and the workflow."""

    cancelled: list[uuid.UUID]
    workflow: WorkflowView
