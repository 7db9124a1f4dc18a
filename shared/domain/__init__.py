"""Domain types and rules with no I/O: the task and its states, outcomes, the retry policy and
the fair shares between priorities. The db and streams layers take and return these."""

from taskstream.shared.domain.fairness import FairShare
from taskstream.shared.domain.retry import failure, retry_delay_ms
from taskstream.shared.domain.task import (
    PRIORITIES,
    STATUSES,
    TERMINAL,
    ClaimedTask,
    Delivery,
    Enqueued,
    ErrorInfo,
    InsertResult,
    NewTask,
    Outcome,
    Priority,
    Publisher,
    Ready,
    Task,
    TaskState,
    TaskTiming,
)

__all__ = [
    "PRIORITIES",
    "STATUSES",
    "TERMINAL",
    "ClaimedTask",
    "Delivery",
    "Enqueued",
    "ErrorInfo",
    "FairShare",
    "InsertResult",
    "NewTask",
    "Outcome",
    "Priority",
    "Publisher",
    "Ready",
    "Task",
    "TaskState",
    "TaskTiming",
    "failure",
    "retry_delay_ms",
]
