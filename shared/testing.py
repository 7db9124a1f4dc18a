"""Running handlers in users' own tests, without Redis, Postgres or an API.

    import taskstream.testing

    async def test_signup_sends_a_welcome_email():
        run = await taskstream.testing.run(signup, {"user_id": 7})
        assert run.result == {"welcomed": 7}
        [email] = run.recorder.of_type("email.send")
        assert email.payload["to"] == "user7@example.com"

``run`` (``run_sync`` in a test without an event loop) calls the handler the way an executor
does: the payload goes through JSON and, for a typed task, is decoded into its payload type
(``PayloadError`` if it does not); the handler gets a real ``Context`` whose ``client`` and
``sync_client`` are a ``Recorder`` that keeps every task it submits; a result that could not be
stored as JSON is an error. Whatever the handler raises is raised (``pytest.raises`` it).
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import msgspec

from taskstream.shared.client import current
from taskstream.shared.client.recording import AsyncRecorder, Recorder, Submitted
from taskstream.shared.definitions import PayloadError, TaskDefinition
from taskstream.shared.errors import TaskstreamError
from taskstream.shared.handlers import Context, Registry, Transaction, registry

__all__ = ["AsyncRecorder", "PayloadError", "Recorder", "Run", "Submitted", "run", "run_sync"]

R = TypeVar("R")
_json = msgspec.json.Encoder()


class Run(Generic[R]):
    """One run of a handler: what it returned, the ``Context`` it got, and the ``recorder``
    of what it submitted (``submitted``, the same list)."""

    def __init__(self, result: R, ctx: Context, recorder: Recorder) -> None:
        self.result = result
        self.ctx = ctx
        self.recorder = recorder

    @property
    def submitted(self) -> list[Submitted]:
        return self.recorder.submitted


class _Target(msgspec.Struct, frozen=True, kw_only=True):
    fn: Callable[[Any, Context], Any]  # what the executor calls: decodes a typed payload
    type: str
    priority: str
    max_attempts: int
    transactional: bool
    is_async: bool


def _target(
    handler: TaskDefinition[Any, Any] | Callable[..., Any],
    task_type: str | None,
    registry: Registry,
) -> _Target:
    if isinstance(handler, TaskDefinition):
        return _Target(
            fn=handler.handler(),
            type=task_type or handler.type,
            priority=handler.options.get("priority", "default"),
            max_attempts=handler.options.get("max_attempts", 5),
            transactional=handler.transactional,
            is_async=handler.is_async,
        )
    registered = next((t for t in registry.types() if _fn(registry, t) is handler), None)
    entry = registry.get(registered) if registered else None
    return _Target(
        fn=handler,
        type=task_type or registered or str(getattr(handler, "__name__", "task")),
        priority="default",
        max_attempts=5,
        transactional=entry.transactional if entry else False,
        is_async=inspect.iscoroutinefunction(handler),
    )


def _fn(registry: Registry, task_type: str) -> Any:
    entry = registry.get(task_type)
    return entry.fn if entry else None


async def run(
    handler: TaskDefinition[Any, Any] | Callable[..., Any],
    payload: Any = None,
    *,
    type: str | None = None,
    attempt: int = 1,
    max_attempts: int | None = None,
    priority: str | None = None,
    timeout: float = 300.0,
    task_id: uuid.UUID | None = None,
    db: Transaction | None = None,
    recorder: Recorder | None = None,
    registry: Registry = registry,
) -> Run[Any]:
    """Run ``handler`` (a ``@task`` definition, a ``@handler`` function or any function of
    ``(payload, ctx)``) once, as attempt ``attempt``, and return the ``Run``.

    ``db`` is what a ``transactional`` handler gets as ``ctx.db`` (an asyncpg connection
    inside a transaction of your test's own, say); ``recorder`` to share one across runs;
    ``timeout`` (seconds) bounds an async handler as the task's ``timeout_ms`` would."""
    target = _target(handler, type, registry)
    if target.transactional and db is None:
        raise TaskstreamError(
            f"{target.type!r} is transactional: give db= (a connection inside a transaction)"
        )
    recorder = recorder if recorder is not None else Recorder()
    ctx = Context(
        task_id=task_id or uuid.uuid4(),
        attempt=attempt,
        attempt_number=attempt,
        max_attempts=max_attempts or target.max_attempts,
        type=target.type,
        priority=priority or target.priority,
        deadline=time.time() + timeout,
        db=db,
    )
    wire = _through_json(payload)
    with current.use(recorder, recorder.aio):
        if target.is_async:
            async with asyncio.timeout(timeout):
                result = await target.fn(wire, ctx)
        else:
            result = await asyncio.to_thread(target.fn, wire, ctx)
    _check_result(target.type, result)
    return Run(result, ctx, recorder)


def run_sync(
    handler: TaskDefinition[Any, Any] | Callable[..., Any],
    payload: Any = None,
    *,
    type: str | None = None,
    attempt: int = 1,
    max_attempts: int | None = None,
    priority: str | None = None,
    timeout: float = 300.0,
    task_id: uuid.UUID | None = None,
    recorder: Recorder | None = None,
    registry: Registry = registry,
) -> Run[Any]:
    """``run`` for tests without an event loop (it runs one for the call)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise TaskstreamError("an event loop is running here: use `await taskstream.testing.run`")
    return asyncio.run(
        run(
            handler,
            payload,
            type=type,
            attempt=attempt,
            max_attempts=max_attempts,
            priority=priority,
            timeout=timeout,
            task_id=task_id,
            recorder=recorder,
            registry=registry,
        )
    )


def _through_json(payload: Any) -> Any:
    """The payload as an executor hands it over: encoded to JSON and decoded again."""
    try:
        return msgspec.json.decode(_json.encode({} if payload is None else payload))
    except (TypeError, ValueError) as exc:
        raise TaskstreamError(f"the payload cannot be sent as JSON: {exc}") from None


def _check_result(task_type: str, result: Any) -> None:
    try:
        _json.encode(result)
    except (TypeError, ValueError) as exc:
        raise TaskstreamError(
            f"the result of {task_type!r} cannot be stored as JSON: {exc}"
        ) from None
