"""What a stalled attempt becomes: a failed attempt (``reclaimed``) that is retried, or, past
``MAX_DELIVERIES``, poison for the dead letters. Shared by the reclaim and the orphan roles;
the executor applies the same cap when it takes back its own entries after a restart."""

from __future__ import annotations

import random
import uuid

import msgspec

from taskstream.shared.config import LeaseConfig
from taskstream.shared.domain import ErrorInfo, Outcome, TaskState, failure
from taskstream.shared.metrics import Metrics

_encode = msgspec.json.Encoder().encode


def expired(
    task: TaskState, times: int, lease: LeaseConfig, rand: random.Random, *, orphan: bool = False
) -> Outcome:
    """The outcome of an attempt whose lease ran out (or whose entry Redis lost), delivered
    ``times`` times."""
    if orphan:
        error = ErrorInfo(
            type="EntryLost",
            message=f"the stream entry of this attempt (consumer {task.consumer}) was lost",
        )
    else:
        error = ErrorInfo(
            type="LeaseExpired",
            message=f"no heartbeat from consumer {task.consumer} for "
            f"{lease.vis_timeout_ms} ms; delivery {times} reclaimed",
        )
    if times > lease.max_deliveries:
        return failure(task, _encode(error), "reclaimed", retryable=False, reason="poison")
    return failure(task, _encode(error), "reclaimed", rand=rand)


def count(
    metrics: Metrics, outcomes: list[Outcome], recorded: set[uuid.UUID], priority: str
) -> None:
    """Count reclaimed attempts by what the fenced update recorded (another janitor may have
    settled the same attempt first: then ours is a fenced result)."""
    for o in outcomes:
        if o.task_id not in recorded:
            metrics.fenced.add(1, {"stage": "reclaim"})
            continue
        metrics.reaped.add(1, {"priority": priority})
        if o.kind == "retry":
            metrics.retried.add(1, {"priority": priority})
        else:
            metrics.dead.add(1, {"priority": priority, "reason": o.reason})
