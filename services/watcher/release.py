"""Publishing what the watcher's roles committed: one entry per task, after the commit.

Shared by the due mover and the repair. The crash point ``watcher.after_commit`` sits between
the commit and the XADD, where the crash tests kill a watcher. When tracing exports, each
entry carries a span of this release as its parent; otherwise the task's own trace context
goes on as it is (no span per row).
"""

from __future__ import annotations

from taskstream.shared import tracing
from taskstream.shared.domain import Ready
from taskstream.shared.faults import crash_point
from taskstream.shared.streams import Publish, Streams


class Release:
    def __init__(self, streams: Streams) -> None:
        self._streams = streams

    async def publish(self, rows: list[Ready]) -> None:
        crash_point("watcher.after_commit")
        await self._streams.publish([self._entry(r) for r in rows])

    def _entry(self, row: Ready) -> Publish:
        if not tracing.enabled():
            return Publish(
                priority=row.priority,
                task_id=row.id,
                attempt=row.attempt,
                trace_context=row.trace_context,
            )
        with tracing.tracer().start_as_current_span(
            "task.release",
            context=tracing.context_from(row.trace_context),
            attributes={"taskstream.task.id": str(row.id), "taskstream.task.attempt": row.attempt},
        ):
            trace_context = tracing.current_traceparent()
        return Publish(
            priority=row.priority, task_id=row.id, attempt=row.attempt, trace_context=trace_context
        )
