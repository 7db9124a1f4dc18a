"""The handler API for user code, and the four built-in handlers of the Go scheduler.

    from taskstream.shared.handlers import handler, Context, NonRetryableError

    @handler("email.send")
    async def send(payload: dict, ctx: Context) -> None:
        await mailer.send(payload["to"], idempotency_key=ctx.idempotency_key)

Modules named in ``HANDLER_MODULES`` are imported when an executor starts, which runs their
decorators. A handler is a coroutine function (or a plain function, run in a thread) taking
the task's payload and a ``Context``; what it returns (JSON, up to ``RESULT_MAX_BYTES``) is
stored with its success. Raising ``Snooze(seconds)`` runs it again later, no attempt used.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from taskstream.shared.errors import TaskstreamError

if TYPE_CHECKING:
    from taskstream.shared.client.protocols import AsyncSubmitter, Submitter

HandlerFn = Callable[[Any, "Context"], Awaitable[Any]] | Callable[[Any, "Context"], Any]


class NonRetryableError(TaskstreamError):
    """Raise from a handler to send the task straight to the dead letters."""


SNOOZE_MAX_S = 30 * 24 * 3600  # as far ahead as a delayed task may be


class Snooze(TaskstreamError):
    """Raise from a handler to run the task again after ``seconds`` without using an
    attempt: it waits in the due table (status ``scheduled``), its fencing token still grows
    (``ctx.attempt``), ``ctx.attempt_number`` stays, and the snooze is in its history. An
    exactly-once handler's writes are rolled back."""

    def __init__(self, seconds: float) -> None:
        if not 0 <= seconds <= SNOOZE_MAX_S:
            raise ValueError(f"Snooze takes 0 to {SNOOZE_MAX_S} seconds, got {seconds!r}")
        super().__init__(f"snoozed for {seconds} s")
        self.seconds = seconds

    @property
    def delay_ms(self) -> int:
        return round(self.seconds * 1000)


class Transaction(Protocol):
    """The open transaction an exactly-once handler writes through (asyncpg-style methods).

    The executor commits it together with the task's ``succeeded`` status, fenced by the
    attempt: if this attempt was reclaimed meanwhile, everything written here is rolled back.
    """

    async def execute(self, query: str, *args: Any) -> str: ...
    async def fetch(self, query: str, *args: Any) -> list[Any]: ...
    async def fetchrow(self, query: str, *args: Any) -> Any: ...
    async def fetchval(self, query: str, *args: Any) -> Any: ...


class Context(msgspec.Struct, frozen=True, kw_only=True):
    """What a handler knows about the run it is part of."""

    task_id: uuid.UUID
    attempt: int  # the fencing token: grows with every delivery of this task
    attempt_number: int  # 1 for the first run, counting fresh after a replay
    max_attempts: int
    type: str
    priority: str
    deadline: float  # time.time() by which the handler must return
    db: Transaction | None = None  # exactly-once handlers only: the task's transaction

    @property
    def idempotency_key(self) -> str:
        """A key unique to this attempt, for downstream side effects."""
        return f"{self.task_id}:{self.attempt}"

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.time())

    @property
    def client(self) -> AsyncSubmitter:
        """The asyncio client to submit follow-up tasks through: an ``AsyncClient`` to
        ``TASKSTREAM_URL``, made on first use and shared by the process (under
        ``taskstream.testing``, the test's recorder)."""
        from taskstream.shared.client import current

        return current.async_client()

    @property
    def sync_client(self) -> Submitter:
        """The same for a plain (non-async) handler: a ``Client``, or the test's recorder."""
        from taskstream.shared.client import current

        return current.sync_client()


class Handler(msgspec.Struct, frozen=True):
    """A registered handler: the function, whether it is a coroutine function (a plain one
    runs in the executor's own threads), and whether it is exactly-once (``transactional``)."""

    fn: HandlerFn
    is_async: bool
    transactional: bool = False


class Registry:
    """Task type → handler."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, task_type: str, fn: HandlerFn, *, transactional: bool = False) -> None:
        """Register ``fn`` for ``task_type``. A ``transactional`` handler (a coroutine function)
        gets ``ctx.db``, a transaction committed with the task's success: exactly-once for
        its writes to this Postgres. A plain function runs in a thread of the executor's own
        pool (one per handler slot), never in asyncio's small default pool."""
        if task_type in self._handlers:
            raise TaskstreamError(f"a handler for {task_type!r} is already registered")
        is_async = inspect.iscoroutinefunction(fn)
        if transactional and not is_async:
            raise TaskstreamError("a transactional handler must be a coroutine function")
        self._handlers[task_type] = Handler(fn, is_async, transactional)

    def get(self, task_type: str) -> Handler | None:
        return self._handlers.get(task_type)

    def types(self) -> list[str]:
        return sorted(self._handlers)

    def handler(
        self, task_type: str, *, transactional: bool = False
    ) -> Callable[[HandlerFn], HandlerFn]:
        def decorate(fn: HandlerFn) -> HandlerFn:
            self.register(task_type, fn, transactional=transactional)
            return fn

        return decorate


registry = Registry()


def handler(task_type: str, *, transactional: bool = False) -> Callable[[HandlerFn], HandlerFn]:
    """Register the decorated function as the handler of ``task_type`` (``transactional``:
    see ``Registry.register``)."""
    return registry.handler(task_type, transactional=transactional)


def load_modules(names: str) -> None:
    """Import each comma-separated module so its handlers register."""
    for name in (n.strip() for n in names.split(",")):
        if name:
            importlib.import_module(name)


class FlakyError(Exception):
    """The built-in ``flaky`` handler failing on purpose."""


class AlwaysFailError(Exception):
    """The built-in ``always_fail`` handler failing on purpose."""


async def noop(payload: Any, ctx: Context) -> None:
    return None


async def flaky(payload: Any, ctx: Context) -> None:
    """Fails the first ``fail_first_n`` attempts, then succeeds."""
    n = int(payload.get("fail_first_n", 1)) if isinstance(payload, dict) else 1
    if ctx.attempt_number <= n:
        raise FlakyError(f"flaky: attempt {ctx.attempt_number} of the first {n} fails")


async def always_fail(payload: Any, ctx: Context) -> None:
    raise AlwaysFailError("always_fail: fails every attempt")


async def sleeper(payload: Any, ctx: Context) -> None:
    """Sleeps ``ms`` milliseconds."""
    ms = int(payload.get("ms", 100)) if isinstance(payload, dict) else 100
    await asyncio.sleep(ms / 1000)


BUILTINS: dict[str, Callable[[Any, Context], Awaitable[Any]]] = {
    "noop": noop,
    "flaky": flaky,
    "always_fail": always_fail,
    "sleeper": sleeper,
}

for _name, _fn in BUILTINS.items():
    registry.register(_name, _fn)
