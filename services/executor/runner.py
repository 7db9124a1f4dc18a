"""Running one claimed task's handler and turning how it ended into an outcome.

Timeouts cost nothing per task: the executor's watchdog marks a running job expired and
cancels its runner, and the cancellation is told apart from a shutdown by that mark. A span is
opened only when tracing exports somewhere.
"""

from __future__ import annotations

import asyncio
import random
import time
import traceback
from typing import Any

import msgspec
from opentelemetry.trace import SpanKind, StatusCode

from taskstream.services.executor.threads import SyncPool
from taskstream.shared import tracing
from taskstream.shared.db import Database
from taskstream.shared.domain import ClaimedTask, Delivery, ErrorInfo, Outcome, failure
from taskstream.shared.errors import Fenced
from taskstream.shared.handlers import Context, NonRetryableError, Registry, Snooze
from taskstream.shared.metrics import Metrics
from taskstream.shared.submit import has_nul

TRACEBACK_CHARS = 4000
_errors = msgspec.json.Encoder()
_results = msgspec.json.Encoder()
_decode = msgspec.json.decode


class BadResult(Exception):
    """A handler's return value that cannot be stored: not JSON, too large, or holding NUL."""

    def __init__(self, error: ErrorInfo) -> None:
        super().__init__(error.message)
        self.error = error


class Job(msgspec.Struct, kw_only=True):
    """A claimed delivery on its way through a runner."""

    delivery: Delivery
    task: ClaimedTask
    deadline: float = 0.0  # loop time by which the handler must return
    expired: bool = False  # set by the watchdog just before it cancels the runner
    runner: asyncio.Task[None] | None = None


class HandlerRunner:
    def __init__(
        self,
        registry: Registry,
        db: Database,
        metrics: Metrics,
        *,
        max_deliveries: int,
        rand: random.Random,
        threads: SyncPool | None = None,
        result_max_bytes: int = 1024 * 1024,
    ) -> None:
        self._registry = registry
        self._db = db
        self._metrics = metrics
        self._max_deliveries = max_deliveries
        self._result_max = result_max_bytes
        self._rand = rand
        self._threads = threads or SyncPool()
        self.avg_run_s = 0.0

    async def run(self, job: Job) -> Outcome:
        if not tracing.enabled():
            return await self._run(job)
        task = job.task
        with tracing.tracer().start_as_current_span(
            "task.run",
            context=tracing.context_from(job.delivery.trace_context),
            kind=SpanKind.CONSUMER,
            attributes={
                "taskstream.task.id": str(task.id),
                "taskstream.task.attempt": task.attempt,
                "taskstream.task.type": task.type,
                "taskstream.task.priority": task.priority,
            },
        ) as span:
            outcome = await self._run(job)
            span.set_attribute("taskstream.outcome", outcome.kind)
            if outcome.kind not in ("succeeded", "committed"):
                span.set_status(StatusCode.ERROR, outcome.outcome)
            return outcome

    async def _run(self, job: Job) -> Outcome:
        task = job.task
        handler = self._registry.get(task.type)
        if handler is None:
            error = ErrorInfo(
                type="UnknownTaskType", message=f"no handler is registered for {task.type!r}"
            )
            return self.failure(task, error, "failed", retryable=False, reason="unknown_type")
        ctx = Context(
            task_id=task.id,
            attempt=task.attempt,
            attempt_number=task.attempts_used,
            max_attempts=task.max_attempts,
            type=task.type,
            priority=task.priority,
            deadline=time.time() + task.timeout_ms / 1000,
        )
        if task.queued_at is not None:
            wait = (task.started_at - task.queued_at).total_seconds()
            self._metrics.wait_seconds.record(max(0.0, wait), {"priority": task.priority})
        started = time.perf_counter()
        value: Any = None
        try:
            payload: Any = _decode(task.payload)
            if handler.transactional:
                # Exactly-once: the handler's writes commit with the success and its result,
                # or not at all (a result that cannot be stored rolls them back).
                async with self._db.exactly_once(task.id, task.attempt) as settle:
                    value = await handler.fn(payload, msgspec.structs.replace(ctx, db=settle.tx))
                    if value is not None:
                        settle.result = self._result(value)
                return self._timed_out(job) or Outcome(
                    task_id=task.id, attempt=task.attempt, kind="committed"
                )
            if handler.is_async:
                value = await handler.fn(payload, ctx)
            else:
                value = await self._threads.run(handler.fn, payload, ctx)
        except asyncio.CancelledError as exc:
            if job.expired:
                return self._timed_out(job) or self.failure(task, error_info(exc), "timeout")
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # shutdown: this runner was cancelled
            # The handler raised CancelledError itself: a failed attempt, the runner lives.
            return self.failure(task, error_info(exc), "failed")
        except Fenced:
            return Outcome(task_id=task.id, attempt=task.attempt, kind="fenced")
        except Snooze as exc:
            return self._timed_out(job) or Outcome(
                task_id=task.id, attempt=task.attempt, kind="snooze", delay_ms=exc.delay_ms
            )
        except BadResult as exc:
            return self.failure(task, exc.error, "failed", retryable=False, reason="bad_result")
        except NonRetryableError as exc:
            return self.failure(
                task, error_info(exc), "failed", retryable=False, reason="non_retryable"
            )
        except Exception as exc:
            return self._timed_out(job) or self.failure(task, error_info(exc), "failed")
        except BaseException as exc:  # SystemExit, KeyboardInterrupt… raised by the handler
            return self.failure(task, error_info(exc), "failed")
        finally:
            took = time.perf_counter() - started
            self._metrics.run_seconds.record(took, {"type": task.type})
            # A moving average of run times (about the last hundred): how quick handlers are.
            self.avg_run_s += (took - self.avg_run_s) * 0.01
        timed_out = self._timed_out(job)
        if timed_out is not None:
            return timed_out
        if value is None:  # the usual case: nothing to store
            return Outcome(
                task_id=task.id,
                attempt=task.attempt,
                kind="succeeded",
                unique=task.unique_states is not None,
            )
        try:
            result = self._result(value)
        except BadResult as exc:
            return self.failure(task, exc.error, "failed", retryable=False, reason="bad_result")
        return Outcome(
            task_id=task.id,
            attempt=task.attempt,
            kind="succeeded",
            result=result,
            unique=task.unique_states is not None,
        )

    def _result(self, value: Any) -> bytes:
        """A handler's return value as the JSON stored with its success; ``BadResult`` when
        it cannot be stored (retrying would not change that, so the task dead-letters)."""
        try:
            encoded = _results.encode(value)
        except Exception as exc:
            raise BadResult(
                ErrorInfo(
                    type="ResultNotEncodable",
                    message=safe_text(
                        f"the handler returned a {type(value).__name__} that is not JSON: {exc}"
                    ),
                )
            ) from None
        if len(encoded) > self._result_max:
            raise BadResult(
                ErrorInfo(
                    type="ResultTooLarge",
                    message=f"the handler's result is {len(encoded)} bytes of JSON, over "
                    f"RESULT_MAX_BYTES ({self._result_max})",
                )
            )
        if b"\\u0000" in encoded and has_nul(_decode(encoded)):
            raise BadResult(
                ErrorInfo(
                    type="ResultNotEncodable",
                    message="the handler's result holds a NUL character (\\u0000), which "
                    "Postgres cannot store",
                )
            )
        return encoded

    def _timed_out(self, job: Job) -> Outcome | None:
        """The timeout outcome if the watchdog expired this job (whatever the handler did
        with the cancellation: swallowed it, or raised something else), else None."""
        if not job.expired:
            return None
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            current.uncancel()
        task = job.task
        error = ErrorInfo(type="Timeout", message=f"handler ran over {task.timeout_ms} ms")
        return self.failure(task, error, "timeout")

    def failure(
        self,
        task: ClaimedTask,
        error: ErrorInfo,
        outcome: str,
        *,
        retryable: bool = True,
        reason: str = "",
    ) -> Outcome:
        return failure(
            task,
            _errors.encode(error),
            outcome,
            retryable=retryable,
            reason=reason,
            rand=self._rand,
        )

    def poison(self, task: ClaimedTask) -> Outcome:
        error = ErrorInfo(
            type="Poison", message=f"delivered more than {self._max_deliveries} times"
        )
        return self.failure(task, error, "dead", retryable=False, reason="poison")


def error_info(exc: BaseException) -> ErrorInfo:
    """An exception as the task's last error: type, message and its traceback (the last
    4,000 characters, where the error is), whatever the exception does: a ``__str__`` that
    raises, text Postgres cannot store (NUL, lone surrogates) are all made safe here."""
    try:
        message = str(exc)
    except Exception as inner:
        message = f"<str() of the exception raised {type(inner).__name__}>"
    try:
        text = "".join(traceback.format_exception(exc))
    except Exception:
        text = ""
    return ErrorInfo(
        type=safe_text(type(exc).__name__),
        message=safe_text(message[:2000]),
        traceback=safe_text(text[-TRACEBACK_CHARS:]),
    )


def safe_text(text: str) -> str:
    """``text`` as Postgres text and jsonb accept it: NUL becomes U+FFFD, and so does anything
    UTF-8 cannot encode (lone surrogates)."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode()
    except UnicodeEncodeError:
        text = text.encode(errors="replace").decode()
    return text
