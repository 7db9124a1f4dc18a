"""Workflows: insert one whole, read it with its steps, list, cancel, what a step's handler
sees of its parents, and the count of ended workflows. What moves a workflow on is the
``tasks_workflow_step`` trigger (``migrations/0011_workflows.sql``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from taskstream.shared import sql_workflows as q
from taskstream.shared.db.base import Base, task_view
from taskstream.shared.workflow_models import StepView, WorkflowView
from taskstream.shared.workflow_ops import WorkflowPlan


class StepParent(msgspec.Struct, frozen=True, kw_only=True):
    """A parent of a step, as its handler sees it: status, result (JSON text) and error."""

    name: str
    status: str
    result: str | None
    last_error: str | None


def _view(row: Any, steps: list[StepView] | None = None) -> WorkflowView:
    return WorkflowView(
        id=row["id"],
        name=row["name"],
        state=row["state"],
        steps_total=row["steps"],
        steps_left=row["steps_left"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        cancelled_at=row["cancelled_at"],
        idempotency_key=row["idempotency_key"],
        steps=steps,
    )


def _step(row: Any) -> StepView:
    return StepView(
        name=row["name"],
        depends_on=list(row["depends_on"]),
        on_parent_failure=row["on_parent_failure"],
        cancel_reason=row["cancel_reason"],
        task=task_view(row),
    )


class WorkflowQueries(Base):
    """Workflows: insert, read, list, cancel, parents, counting ends."""

    async def insert_workflow(self, plan: WorkflowPlan) -> tuple[uuid.UUID, bool, bool]:
        """Insert a workflow and every step in one transaction: (its id, whether this call
        made it, whether the request digest matches, for a taken idempotency key)."""
        steps = plan.steps
        tasks = [s.task for s in steps]
        names = {s.name for s in steps}
        assert len(names) == len(steps)
        parents, children = plan.edges()
        async with self._pool.acquire() as conn, conn.transaction():
            made = await conn.fetchval(
                q.INSERT_WORKFLOW,
                plan.id,
                plan.name,
                plan.idempotency_key,
                plan.request_hash,
                len(steps),
            )
            if made is None:
                row = await conn.fetchrow(q.SELECT_WORKFLOW_BY_KEY, plan.idempotency_key)
                return row["id"], False, bytes(row["request_hash"]) == plan.request_hash
            await conn.fetchrow(
                q.INSERT_WORKFLOW_STEPS,
                [t.id for t in tasks],
                [t.type for t in tasks],
                [t.priority for t in tasks],
                [t.payload.decode() for t in tasks],
                [t.max_attempts for t in tasks],
                [t.retry_base_ms for t in tasks],
                [t.retry_max_ms for t in tasks],
                [t.retry_jitter_ms for t in tasks],
                [t.timeout_ms for t in tasks],
                [t.run_at for t in tasks],
                [t.delay_ms for t in tasks],
                [s.name for s in steps],
                [len(s.parents) for s in steps],
                [s.on_parent_failure for s in steps],
                tasks[0].trace_context,
                plan.id,
                parents,
                children,
            )
        return plan.id, True, True

    async def get_workflow(self, workflow_id: uuid.UUID) -> WorkflowView | None:
        """A workflow with its steps (in submission order), or None."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            row = await conn.fetchrow(q.SELECT_WORKFLOW, workflow_id)
            if row is None:
                return None
            steps = await conn.fetch(q.SELECT_WORKFLOW_STEPS, workflow_id)
        return _view(row, [_step(s) for s in steps])

    async def list_workflows(
        self, *, state: str | None, after: uuid.UUID | None, limit: int
    ) -> list[WorkflowView]:
        """Newest first (ids are time-ordered), without their steps."""
        rows = await self._pool.fetch(q.LIST_WORKFLOWS, state, after, limit)
        return [_view(r) for r in rows]

    async def cancel_workflow(self, workflow_id: uuid.UUID) -> list[uuid.UUID] | None:
        """Cancel every step not yet started; the ids cancelled, or None when there is no such
        workflow. Locks in the order of ``sql_workflows``: due rows, workflow, tasks."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(q.LOCK_DUE_OF_WORKFLOW, workflow_id)
            if await conn.fetchval(q.MARK_WORKFLOW_CANCELLED, workflow_id) is None:
                return None
            rows = await conn.fetch(q.CANCEL_WORKFLOW_STEPS, workflow_id)
        return [r["id"] for r in rows]

    async def step_parents(self, task_id: uuid.UUID) -> list[StepParent]:
        """The parents of a workflow step, in submission order."""
        rows = await self._pool.fetch(q.STEP_PARENTS, task_id)
        return [
            StepParent(
                name=r["name"], status=r["status"], result=r["result"], last_error=r["last_error"]
            )
            for r in rows
        ]

    async def count_finished_workflows(self, task_ids: Sequence[uuid.UUID]) -> list[str]:
        """The states of the workflows of these steps that have ended and were not yet
        counted (each end is returned once, to whoever asks first)."""
        rows = await self._pool.fetch(q.COUNT_FINISHED_WORKFLOWS, list(task_ids))
        return [r["state"] for r in rows]

    async def count_ended_workflows(self, limit: int = 1000) -> list[str]:
        """The states of up to ``limit`` ended workflows nobody counted yet (marked counted)."""
        rows = await self._pool.fetch(q.COUNT_ENDED_WORKFLOWS, limit)
        return [r["state"] for r in rows]
