"""Property-based test of the task state machine against the real Postgres (hypothesis).

Random interleavings of what the actors do to a few tasks — an executor's claim (also with a
stale delivery), its outcome (success, a retry, death), the janitor's reclaim of an expired
lease, the watcher's move of due rows, a cancel, a dead-letter replay — all through the
``Database`` methods the services call. After every step the invariants hold: at most one
recorded success per task, a cancelled task never runs again, nothing is lost (every
unfinished task has a way on: an entry, a due row or a holder), attempts only grow, and only
dead tasks have dead letters.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from taskstream.shared import config as config_mod
from taskstream.shared import db as db_mod
from taskstream.shared.db import Database
from taskstream.shared.domain import Outcome, Ready, TaskState
from taskstream.shared.ops_models import DlqFilter
from tests.conftest import SERVER_URL
from tests.factories import new_task

T = TypeVar("T")
TASKS = 3


class TaskStates(RuleBasedStateMachine):
    template: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.url = db_mod.with_database(SERVER_URL, f"ts_prop_{uuid.uuid4().hex[:12]}")
        self.run(db_mod.create_database(self.url, template=self.template))
        self.db = self.run(Database.connect(self.url, min_size=1, max_size=2))
        self.config = config_mod.load({}, database_url=self.url, retry_base_ms=0, retry_max_ms=0,
                                      retry_jitter_ms=0, max_attempts=3)  # fmt: skip
        self.entries: list[tuple[uuid.UUID, int]] = []  # published (task, attempt), not taken
        self.held: dict[uuid.UUID, int] = {}  # claimed by "an executor": task → attempt
        self.successes: dict[uuid.UUID, int] = {}
        self.cancelled: set[uuid.UUID] = set()
        self.attempts: dict[uuid.UUID, int] = {}
        self.ids: list[uuid.UUID] = []

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.db.close())
        self.run(db_mod.drop_database(self.url))
        self.loop.close()

    async def _publish(self, rows: list[Ready]) -> None:
        self.entries.extend((r.id, r.attempt) for r in rows)

    @initialize()
    def tasks(self) -> None:
        tasks = [new_task(self.config) for _ in range(TASKS)]
        self.run(self.db.insert_tasks(tasks))
        self.ids = [t.id for t in tasks]
        self.entries = [(t.id, 1) for t in tasks]

    @precondition(lambda self: bool(self.entries))
    @rule(data=st.data())
    def claim(self, data: st.DataObject) -> None:
        """An executor reads an entry (maybe stale or a duplicate) and claims it, fenced."""
        task_id, attempt = data.draw(st.sampled_from(self.entries))
        self.entries.remove((task_id, attempt))
        claimed = self.run(self.db.claim([task_id], [attempt], ["0-1"], "executor"))
        if claimed:
            assert task_id not in self.cancelled, "a cancelled task was claimed"
            assert task_id not in self.held, "claimed twice at once"
            self.held[task_id] = attempt

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data(), kind=st.sampled_from(["succeeded", "retry", "dead"]))
    def finish(self, data: st.DataObject, kind: str) -> None:
        """The handler ended; its outcome is recorded fenced."""
        task_id = data.draw(st.sampled_from(sorted(self.held)))
        attempt = self.held.pop(task_id)
        outcome = Outcome(task_id=task_id, attempt=attempt, kind=kind, error=b'{"type":"E",'
                          b'"message":"m"}', reason="non_retryable")  # fmt: skip
        recorded = self.run(self.db.complete([outcome]))
        if kind == "succeeded" and task_id in recorded:
            self.successes[task_id] = self.successes.get(task_id, 0) + 1

    @precondition(lambda self: bool(self.held))
    @rule(data=st.data(), late=st.booleans())
    def reclaim(self, data: st.DataObject, late: bool) -> None:
        """The janitor takes an expired lease: a failed attempt; the old worker is fenced
        (``late``: it still reports success afterwards)."""
        task_id = data.draw(st.sampled_from(sorted(self.held)))
        attempt = self.held.pop(task_id)
        state = self.run(self.db.task_states([task_id]))[task_id]
        if state.status == "running" and state.attempt == attempt:
            self.run(self.db.complete([_reclaimed(state)]))
        if late:
            won = Outcome(task_id=task_id, attempt=attempt, kind="succeeded")
            assert self.run(self.db.complete([won])) == set(), "a fenced worker recorded"

    @rule()
    def move_due(self) -> None:
        self.run(self.db.move_due(100, self._publish))

    @rule(index=st.integers(0, TASKS - 1))
    def cancel(self, index: int) -> None:
        view = self.run(self.db.cancel_task(self.ids[index]))
        if view is not None:
            self.cancelled.add(view.id)

    @rule()
    def replay(self) -> None:
        self.run(self.db.replay_dead_letters(None, DlqFilter(), 100, self._publish))

    @invariant()
    def holds(self) -> None:
        if not self.ids:
            return
        rows = {r["id"]: r for r in self.run(_rows(self.url))}
        due = {(r["task_id"], r["attempt"]) for r in self.run(_due(self.url))}
        letters = {r["task_id"] for r in self.run(_letters(self.url))}
        for task_id in self.ids:
            row = rows[task_id]
            status, attempt = row["status"], row["attempt"]
            assert attempt >= self.attempts.get(task_id, 1), "the attempt went back"
            self.attempts[task_id] = attempt
            assert self.successes.get(task_id, 0) <= 1, "two recorded successes"
            if task_id in self.cancelled:
                assert status == "cancelled", f"a cancel was undone: {status}"
            assert (task_id in letters) == (status == "dead"), "dead letters ≠ dead tasks"
            # Nothing lost: an unfinished task has a way on.
            if status == "queued":
                assert (task_id, attempt) in self.entries, "queued without an entry"
            elif status == "retrying":
                assert (task_id, attempt) in due, "retrying without a due row"
            elif status == "running":
                assert self.held.get(task_id) == attempt, "running with nobody holding it"


def _reclaimed(state: TaskState) -> Outcome:
    from taskstream.shared.domain import failure

    return failure(state, b'{"type":"LeaseExpired","message":"m"}', "reclaimed")


async def _rows(url: str) -> list[Any]:
    from tests.helpers import query

    return await query(url, "SELECT id, status, attempt FROM tasks")


async def _due(url: str) -> list[Any]:
    from tests.helpers import query

    return await query(url, "SELECT task_id, attempt FROM due")


async def _letters(url: str) -> list[Any]:
    from tests.helpers import query

    return await query(url, "SELECT task_id FROM dead_letters")


@pytest.fixture
def machine(template_db: str) -> type[TaskStates]:
    TaskStates.template = template_db
    return TaskStates


def test_the_task_state_machine_keeps_its_invariants(machine: type[TaskStates]) -> None:
    test = machine.TestCase
    test.settings = settings(
        max_examples=12,
        stateful_step_count=25,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    test().runTest()
