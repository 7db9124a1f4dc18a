"""The only package that talks to Postgres (asyncpg).

Services call typed methods (``insert_tasks``, ``claim``, ``complete``…) of ``Database``; the
SQL lives in ``shared.sql`` as named constants, and migrations in ``migrations/`` as numbered
files. The methods come in families, one module each: ``tasks`` (ingest and executors),
``movers`` (watcher and janitor), ``operators``, ``load`` (the load generator),
``schedules`` (recurring schedules), ``pauses`` (queue pauses, parked tasks), ``workflows``
and ``access`` (API keys, tenants, limits); ``schema`` creates and migrates. ``boundary``
translates every driver error into the project's own.
"""

from __future__ import annotations

from taskstream.shared.db.access import AccessQueries
from taskstream.shared.db.base import task_view
from taskstream.shared.db.load import LoadQueries
from taskstream.shared.db.movers import MoverQueries
from taskstream.shared.db.operators import OperatorQueries
from taskstream.shared.db.pauses import Pause, PauseQueries
from taskstream.shared.db.retention import RetentionQueries
from taskstream.shared.db.schedules import Fired, Run, ScheduleQueries
from taskstream.shared.db.schema import (
    MIGRATIONS_DIR,
    create_database,
    drop_database,
    migrate,
    schema_version,
    with_database,
)
from taskstream.shared.db.tasks import TaskQueries
from taskstream.shared.db.workflows import StepParent, WorkflowQueries


class Database(
    TaskQueries,
    MoverQueries,
    OperatorQueries,
    RetentionQueries,
    LoadQueries,
    ScheduleQueries,
    PauseQueries,
    AccessQueries,
    WorkflowQueries,
):
    """A pool of connections and every typed operation on it."""


__all__ = [
    "MIGRATIONS_DIR",
    "Database",
    "Fired",
    "Pause",
    "Run",
    "StepParent",
    "create_database",
    "drop_database",
    "migrate",
    "schema_version",
    "task_view",
    "with_database",
]
