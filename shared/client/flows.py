"""What each client call does, written once for the sync and the async client (sans I/O).

A flow is a generator: it yields ``Call`` (an HTTP request to make) or ``Sleep`` (a pause) and
is sent back the ``Answer`` (or has ``NoAnswer`` thrown in); it returns the call's value or
raises its error. ``Client`` and ``AsyncClient`` only drive flows (with their own HTTP and
sleep), so retries, idempotency keys, batching, waiting and error mapping behave
the same in both, and tests can drive a flow with a scripted server and a fake clock.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any, TypeVar

import msgspec

from taskstream.shared.client import errors
from taskstream.shared.client.errors import (
    ApiError,
    Conflict,
    ConnectionFailed,
    ServerError,
    TaskCancelled,
    TaskFailed,
    TooLarge,
    ValidationError,
    WaitTimeout,
)
from taskstream.shared.client.models import (
    OPTION_NAMES,
    DeadLetter,
    DlqResult,
    PendingList,
    Queues,
    RetryPolicy,
    SubmitOptions,
    Task,
)
from taskstream.shared.domain.schedule import NAME_PATTERN
from taskstream.shared.schedule_models import ScheduleList, ScheduleView, TriggerResult

T = TypeVar("T")

# The longest ``?wait=`` asked of the API in one request (it holds a request up to 60 s).
WAIT_STEP_S = 30
# Polling between reads when the API answers a ``?wait=`` at once (one that does not wait).
POLL_MIN_S = 0.05
POLL_MAX_S = 1.0
# ``POST /v1/tasks/batch`` takes this many tasks by default (``BATCH_MAX_TASKS``); a smaller
# server limit is found by splitting a chunk the API refuses as too large.
BATCH_CHUNK = 1000
RETRY_STATUSES = frozenset({502, 503, 504})
PAGE_SIZE = 100


class Call(msgspec.Struct, frozen=True, kw_only=True):
    """One HTTP request; ``hold_s`` is how long the API may hold it (``?wait=``), added to
    the read timeout."""

    method: str
    path: str
    params: dict[str, str] | None = None
    body: bytes | None = None
    hold_s: float = 0.0


class Sleep(msgspec.Struct, frozen=True):
    seconds: float


class Answer(msgspec.Struct, frozen=True):
    status: int
    body: bytes
    headers: Mapping[str, str]  # case-insensitive in the drivers (httpx.Headers)


class NoAnswer(Exception):
    """The driver got no answer: ``sent`` when the request may have reached the API (a cut
    or timed-out connection) rather than surely not (connection refused); ``retryable``
    false for failures a retry cannot fix (a malformed URL, say)."""

    def __init__(self, cause: BaseException, *, sent: bool, retryable: bool = True) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause
        self.sent = sent
        self.retryable = retryable


Step = Call | Sleep
Flow = Generator[Step, Any, T]


class Settings:
    """What every flow of one client shares: the retry policy, its randomness, the clock."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        rand: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.rand = rand or random.Random()
        self.clock = clock


def request(s: Settings, call: Call, *, idempotent: bool) -> Flow[Answer]:
    """Make ``call``, retrying connection failures and 502/503/504 up to the policy's count;
    an ``idempotent`` call is retried even when the request may have reached the API. An
    error answer is raised as its ``ApiError``."""
    retry = 0
    while True:
        try:
            answer: Answer = yield call
        except NoAnswer as failure:
            may_retry = failure.retryable and (idempotent or not failure.sent)
            if not may_retry or retry >= s.policy.retries:
                raise ConnectionFailed(
                    f"{call.method} {call.path}: no answer after {retry + 1} tries: {failure}",
                    code="connection",
                ) from failure.cause
            yield Sleep(s.policy.delay(retry, None, s.rand))
            retry += 1
            continue
        if answer.status < 400:
            return answer
        error = errors.from_answer(answer.status, answer.body, answer.headers)
        if answer.status in RETRY_STATUSES and retry < s.policy.retries:
            yield Sleep(s.policy.delay(retry, error.retry_after, s.rand))
            retry += 1
            continue
        raise error


def _decode(decoder: msgspec.json.Decoder[T], answer: Answer) -> T:
    try:
        return decoder.decode(answer.body)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise ServerError(f"the API answered something this client cannot read: {exc}") from None


_task = msgspec.json.Decoder(Task)


class _Page(msgspec.Struct, frozen=True):
    tasks: list[Task]
    next_cursor: str | None = None


class _DlqPage(msgspec.Struct, frozen=True):
    dead_letters: list[DeadLetter]
    next_cursor: str | None = None


class _Item(msgspec.Struct, frozen=True):
    task: Task | None = None
    error: dict[str, Any] | None = None
    id: uuid.UUID | None = None
    status: str | None = None


class _Batch(msgspec.Struct, frozen=True):
    results: list[_Item]


_page = msgspec.json.Decoder(_Page)
_dlq_page = msgspec.json.Decoder(_DlqPage)
_batch = msgspec.json.Decoder(_Batch)
_dlq_result = msgspec.json.Decoder(DlqResult)
_queues = msgspec.json.Decoder(Queues)
_schedule = msgspec.json.Decoder(ScheduleView)
_schedules = msgspec.json.Decoder(ScheduleList)
_triggered = msgspec.json.Decoder(TriggerResult)
_pending = msgspec.json.Decoder(PendingList)
_encode = msgspec.json.Encoder().encode
_SCHEDULE_NAME = re.compile(NAME_PATTERN)


def task_id(value: str | uuid.UUID) -> str:
    """A task id as its path segment (refused before any request if it is not a uuid)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ValidationError(f"not a task id: {value!r}", code="invalid", field="id") from None


def new_idempotency_key() -> str:
    return f"ts-{uuid.uuid4()}"


def task_body(task_type: str, payload: Any, options: Mapping[str, Any], prefix: str = "") -> bytes:
    """One task's JSON body, with an idempotency key; ``ValidationError`` (naming the field,
    after ``prefix``) for what cannot be sent, before any request is made."""
    if not isinstance(task_type, str) or not task_type:
        raise ValidationError(
            "type must be a non-empty string", code="invalid", field=f"{prefix}type"
        )
    unknown = sorted(set(options) - OPTION_NAMES)
    if unknown:
        known = ", ".join(sorted(OPTION_NAMES))
        raise ValidationError(
            f"unknown option {unknown[0]!r} (options: {known})",
            code="invalid",
            field=prefix + unknown[0],
        )
    body: dict[str, Any] = {"type": task_type, "payload": {} if payload is None else payload}
    body.update((k, v) for k, v in options.items() if v is not None)
    if "run_at" in body and "delay_ms" in body:
        raise ValidationError(
            "give run_at or delay_ms, not both", code="invalid", field=f"{prefix}delay_ms"
        )
    key = body.setdefault("idempotency_key", new_idempotency_key())
    if not isinstance(key, str) or not key:
        raise ValidationError(
            "idempotency_key must be a non-empty string",
            code="invalid",
            field=f"{prefix}idempotency_key",
        )
    try:
        return _encode(body)
    except (TypeError, ValueError) as exc:
        for name, value in body.items():  # name the field that does not encode
            try:
                _encode(value)
            except (TypeError, ValueError):
                raise errors.invalid(exc, prefix + name) from None
        raise errors.invalid(exc, prefix.rstrip(".") or "task") from None


def submit(s: Settings, task_type: str, payload: Any, options: SubmitOptions) -> Flow[Task]:
    body = task_body(task_type, payload, options)
    answer = yield from request(
        s, Call(method="POST", path="/v1/tasks", body=body), idempotent=True
    )
    return _decode(_task, answer)


def item_body(index: int, item: Any) -> bytes:
    """One element of ``submit_many``: a mapping ``{"type", "payload"?, <option>…}``."""
    prefix = f"tasks[{index}]."
    if not isinstance(item, Mapping):
        raise ValidationError(
            "each task must be a mapping with a type", code="invalid", field=f"tasks[{index}]"
        )
    options = {k: v for k, v in item.items() if k not in ("type", "payload")}
    return task_body(item.get("type"), item.get("payload"), options, prefix)  # type: ignore[arg-type]


Results = list[Task | ApiError]
_CHUNK_INDEX = re.compile(r"^tasks\[\d+\]")


def submit_many(s: Settings, items: Iterable[Any], chunk: int = BATCH_CHUNK) -> Flow[Results]:
    """Every item submitted through the batch route, ``chunk`` at a time: one result per item,
    in order, a ``Task`` or the item's own error. A chunk the API refuses as too large is
    split in two; a chunk that fails as a whole (no answer after the retries, 401…) gives its
    error to its items and to every later item, which are not sent."""
    out: list[Task | ApiError | None] = []
    ready: list[tuple[int, bytes]] = []
    for i, item in enumerate(items):
        out.append(None)
        try:
            ready.append((i, item_body(i, item)))
        except ValidationError as exc:
            out[i] = exc
    pending = [ready[n : n + chunk] for n in range(0, len(ready), max(1, chunk))]
    while pending:
        part = pending.pop(0)
        try:
            answer = yield from request(s, _batch_call(part), idempotent=True)
        except TooLarge as exc:
            if len(part) > 1:
                mid = len(part) // 2
                pending[:0] = [part[:mid], part[mid:]]
                continue
            exc.field = f"tasks[{part[0][0]}]"
            out[part[0][0]] = exc
            continue
        except ApiError as exc:
            for i, _ in [p for rest in [part, *pending] for p in rest]:
                out[i] = exc
            break
        results = _decode(_batch, answer).results
        if len(results) != len(part):
            raise ServerError(f"the batch answer has {len(results)} results for {len(part)} tasks")
        for (i, _), result in zip(part, results, strict=True):
            out[i] = _result(i, result)
    return [r for r in out if r is not None]


def _batch_call(part: list[tuple[int, bytes]]) -> Call:
    body = b'{"tasks":[' + b",".join(b for _, b in part) + b"]}"
    return Call(method="POST", path="/v1/tasks/batch", body=body)


def _result(index: int, item: _Item) -> Task | ApiError:
    if item.error is not None:
        error = errors.from_code(item.error)
        error.field = _CHUNK_INDEX.sub(f"tasks[{index}]", error.field or f"tasks[{index}]")
        return error
    if item.task is not None:
        return item.task
    if item.id is not None and item.status is not None:  # a server that sends no task view
        return Task(id=item.id, type="", status=item.status)
    return ServerError(f"the batch answer for tasks[{index}] has neither a task nor an error")


def get(s: Settings, task: str | uuid.UUID, wait_s: int = 0) -> Flow[Task]:
    params = {"wait": str(wait_s)} if wait_s > 0 else None
    call = Call(method="GET", path=f"/v1/tasks/{task_id(task)}", params=params, hold_s=wait_s)
    answer = yield from request(s, call, idempotent=True)
    return _decode(_task, answer)


def wait(s: Settings, task: str | uuid.UUID, timeout: float | None) -> Flow[Task]:
    """The task once it has ended; ``TaskFailed`` (``TaskCancelled``) if it did not succeed,
    ``WaitTimeout`` after ``timeout`` seconds (None: no limit).

    Each read asks the API to hold it until the task ends (``?wait=``, at most 30 s and never
    past the deadline); an API that answers at once instead (one without ``?wait=``) is
    polled, 50 ms apart at first, growing to 1 s."""
    ident = task_id(task)
    deadline = None if timeout is None else s.clock() + timeout
    poll = POLL_MIN_S
    while True:
        remaining = WAIT_STEP_S if deadline is None else deadline - s.clock()
        hold = max(0, int(min(remaining, WAIT_STEP_S)))
        asked = s.clock()
        current = yield from get(s, ident, hold)
        if current.done:
            if current.status == "succeeded":
                return current
            raise (TaskCancelled if current.status == "cancelled" else TaskFailed)(current)
        now = s.clock()
        remaining = WAIT_STEP_S if deadline is None else deadline - now
        if remaining <= 0:
            raise WaitTimeout(current, timeout or 0.0)
        if hold == 0 or now - asked < hold / 2:  # answered without holding: poll
            yield Sleep(min(poll, remaining))
            poll = min(poll * 2, POLL_MAX_S)


def cancel(s: Settings, task: str | uuid.UUID) -> Flow[Task]:
    """Cancel a task; cancelling one already cancelled returns it (so a retried cancel whose
    first try took effect is not an error). ``Conflict`` when it is running or has ended."""
    ident = task_id(task)
    try:
        answer = yield from request(
            s, Call(method="POST", path=f"/v1/tasks/{ident}/cancel"), idempotent=True
        )
    except Conflict as exc:
        if exc.code != "not_cancellable":
            raise
        current = yield from get(s, ident)
        if current.status != "cancelled":
            raise
        return current
    return _decode(_task, answer)


def _params(values: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for name, value in values.items():
        if value is None:
            continue
        out[name] = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return out


def task_page(
    s: Settings, filters: Mapping[str, Any], cursor: str | None, limit: int
) -> Flow[tuple[list[Task], str | None]]:
    """One page of ``GET /v1/tasks`` (newest first) and the cursor of the next."""
    params = _params({**filters, "cursor": cursor, "limit": limit})
    answer = yield from request(
        s, Call(method="GET", path="/v1/tasks", params=params), idempotent=True
    )
    page = _decode(_page, answer)
    return page.tasks, page.next_cursor


def dlq_page(
    s: Settings, filters: Mapping[str, Any], cursor: str | None, limit: int
) -> Flow[tuple[list[DeadLetter], str | None]]:
    """One page of ``GET /v1/dlq`` and the cursor of the next."""
    params = _params({**filters, "cursor": cursor, "limit": limit})
    answer = yield from request(
        s, Call(method="GET", path="/v1/dlq", params=params), idempotent=True
    )
    page = _decode(_dlq_page, answer)
    return page.dead_letters, page.next_cursor


def queues(s: Settings) -> Flow[Queues]:
    """``GET /v1/queues``: per priority lag, pending, consumers, ages, retries, dead letters."""
    answer = yield from request(s, Call(method="GET", path="/v1/queues"), idempotent=True)
    return _decode(_queues, answer)


def pending(
    s: Settings, priority: str, consumer: str | None, min_idle_ms: int, limit: int
) -> Flow[PendingList]:
    """``GET /v1/queues/{priority}/pending``: the oldest pending entries with their tasks."""
    params = _params({"consumer": consumer, "min_idle_ms": min_idle_ms, "limit": limit})
    call = Call(method="GET", path=f"/v1/queues/{priority}/pending", params=params)
    answer = yield from request(s, call, idempotent=True)
    return _decode(_pending, answer)


def _schedule_path(name: str) -> str:
    if not name or not _SCHEDULE_NAME.match(name):
        raise ValidationError(
            "a schedule name is letters, digits and _ . : -", code="invalid", field="name"
        )
    return f"/v1/schedules/{name}"


def schedules(s: Settings) -> Flow[ScheduleList]:
    """``GET /v1/schedules``: every schedule with its next and last run and counts."""
    answer = yield from request(s, Call(method="GET", path="/v1/schedules"), idempotent=True)
    return _decode(_schedules, answer)


def schedule(s: Settings, name: str) -> Flow[ScheduleView]:
    call = Call(method="GET", path=_schedule_path(name))
    answer = yield from request(s, call, idempotent=True)
    return _decode(_schedule, answer)


def put_schedule(s: Settings, name: str, spec: Mapping[str, Any]) -> Flow[ScheduleView]:
    """``PUT /v1/schedules/{name}``: create or replace (the same spec again changes nothing,
    so it is safe to retry)."""
    call = Call(method="PUT", path=_schedule_path(name), body=_encode(dict(spec)))
    answer = yield from request(s, call, idempotent=True)
    return _decode(_schedule, answer)


def schedule_state(s: Settings, name: str, action: str, note: str | None) -> Flow[ScheduleView]:
    """Pause or resume (``action``) a schedule, with an optional note (both idempotent)."""
    body = _encode({"note": note} if note is not None else {})
    call = Call(method="POST", path=f"{_schedule_path(name)}/{action}", body=body)
    answer = yield from request(s, call, idempotent=True)
    return _decode(_schedule, answer)


def trigger_schedule(s: Settings, name: str) -> Flow[TriggerResult]:
    """Run a schedule now (not retried once it may have reached the API: each is a run)."""
    call = Call(method="POST", path=f"{_schedule_path(name)}/trigger")
    answer = yield from request(s, call, idempotent=False)
    return _decode(_triggered, answer)


def dlq_replay(
    s: Settings,
    ids: Iterable[str | uuid.UUID] | None,
    filters: Mapping[str, Any],
    *,
    all: bool,
    dry_run: bool,
) -> Flow[DlqResult]:
    """Replay dead letters: some ``ids``, those matching ``filters``, or ``all``; not retried
    once the request may have been sent (a second replay would replay what died since)."""
    body: dict[str, Any] = {"all": all, "dry_run": dry_run}
    if ids is not None:
        body["ids"] = [task_id(i) for i in ids]
    chosen = {k: v for k, v in filters.items() if v is not None}
    if chosen:
        body["filter"] = chosen
    try:
        encoded = _encode(body)
    except (TypeError, ValueError) as exc:
        raise errors.invalid(exc, "filter") from None
    call = Call(method="POST", path="/v1/dlq/replay", body=encoded)
    answer = yield from request(s, call, idempotent=False)
    return _decode(_dlq_result, answer)


def dlq_purge(s: Settings, task: str | uuid.UUID) -> Flow[DlqResult]:
    """Purge one dead letter (the task stays dead, with its history)."""
    call = Call(method="DELETE", path=f"/v1/dlq/{task_id(task)}")
    answer = yield from request(s, call, idempotent=False)
    return _decode(_dlq_result, answer)
