"""In-memory stand-ins for the clients, for users' tests: ``Recorder`` (for ``Client``) and
``AsyncRecorder`` (for ``AsyncClient``) accept submits as the API would — the same checks of
the options and the payload, idempotency keys honoured, ``get`` and ``cancel`` of what they
hold — and keep every task created in ``submitted``, so a test can assert what its code
enqueued without Redis, Postgres or an API (as River's ``rivertest.RequireInserted`` and
procrastinate's in-memory connector do)."""

from __future__ import annotations

import builtins
import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from taskstream.shared.client import flows
from taskstream.shared.client.errors import ApiError, Conflict, NotFound, ValidationError
from taskstream.shared.client.models import Task

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from taskstream.shared.client.models import SubmitOptions

_decode = msgspec.json.decode


class Submitted(msgspec.Struct, kw_only=True):
    """One task a recorder accepted: its ``type``, its ``payload`` as the API would store it
    (after JSON), the ``options`` given (the client's own idempotency key left out), and the
    ``Task`` it answered."""

    type: str
    payload: Any
    options: dict[str, Any]
    task: Task


class Recorder:
    """A drop-in for ``Client``'s ``submit``, ``submit_many``, ``get`` and ``cancel`` that
    keeps what was submitted in ``submitted`` (oldest first). ``aio`` is the matching
    ``AsyncRecorder``, sharing the same record."""

    def __init__(self) -> None:
        self.submitted: builtins.list[Submitted] = []
        self._by_id: dict[uuid.UUID, int] = {}
        self._by_key: dict[str, tuple[int, bytes]] = {}
        self.aio = AsyncRecorder(self)

    def of_type(self, task_type: str) -> builtins.list[Submitted]:
        """The submitted tasks of one type, oldest first."""
        return [s for s in self.submitted if s.type == task_type]

    def clear(self) -> None:
        self.submitted.clear()
        self._by_id.clear()
        self._by_key.clear()

    def submit(self, type: str, payload: Any = None, **options: Unpack[SubmitOptions]) -> Task:
        caller_key = options.get("idempotency_key")
        body = flows.task_body(type, payload, options)
        return self._accept(body, caller_key is not None)

    def submit_many(self, tasks: Iterable[Mapping[str, Any]]) -> builtins.list[Task | ApiError]:
        out: builtins.list[Task | ApiError] = []
        for i, item in enumerate(tasks):
            try:
                keyed = isinstance(item, Mapping) and item.get("idempotency_key") is not None
                out.append(self._accept(flows.item_body(i, item), keyed))
            except ApiError as exc:
                out.append(exc)
        return out

    def get(self, task: str | uuid.UUID) -> Task:
        return self._record(task).task

    def cancel(self, task: str | uuid.UUID) -> Task:
        record = self._record(task)
        if record.task.status in ("scheduled", "queued", "retrying", "cancelled"):
            record.task = msgspec.structs.replace(record.task, status="cancelled")
            return record.task
        raise Conflict(f"task {record.task.id} is {record.task.status}", code="not_cancellable")

    def _record(self, task: str | uuid.UUID) -> Submitted:
        ident = uuid.UUID(flows.task_id(task))
        if ident not in self._by_id:
            raise NotFound(f"no task {ident}", status=404, code="not_found")
        return self.submitted[self._by_id[ident]]

    def _accept(self, body: bytes, caller_key: bool) -> Task:
        fields: dict[str, Any] = _decode(body)
        key = fields["idempotency_key"]
        if caller_key and key in self._by_key:
            index, before = self._by_key[key]
            if before != body:
                raise Conflict(
                    "this idempotency key was used with a different request body",
                    status=409,
                    code="idempotency_conflict",
                    field="idempotency_key",
                )
            return self.submitted[index].task
        options = {k: v for k, v in fields.items() if k not in ("type", "payload")}
        if not caller_key:
            del options["idempotency_key"]
        now = dt.datetime.now(dt.UTC)
        try:
            task = Task(
                id=uuid.uuid4(),
                type=fields["type"],
                status="scheduled" if ("run_at" in fields or "delay_ms" in fields) else "queued",
                priority=fields.get("priority", "default"),
                payload=fields["payload"],
                max_attempts=fields.get("max_attempts", 0),
                idempotency_key=key,
                created_at=now,
                updated_at=now,
                run_at=now,
                timeout_ms=fields.get("timeout_ms", 0),
            )
        except (TypeError, msgspec.ValidationError) as exc:
            raise ValidationError(str(exc), code="invalid") from None
        self._by_id[task.id] = len(self.submitted)
        self._by_key[key] = (len(self.submitted), body)
        self.submitted.append(
            Submitted(type=task.type, payload=task.payload, options=options, task=task)
        )
        return task


class AsyncRecorder:
    """The same for ``AsyncClient`` (each call awaited); ``submitted`` is its recorder's."""

    def __init__(self, recorder: Recorder | None = None) -> None:
        self.recorder = recorder if recorder is not None else Recorder()

    @property
    def submitted(self) -> builtins.list[Submitted]:
        return self.recorder.submitted

    def of_type(self, task_type: str) -> builtins.list[Submitted]:
        return self.recorder.of_type(task_type)

    async def submit(
        self, type: str, payload: Any = None, **options: Unpack[SubmitOptions]
    ) -> Task:
        return self.recorder.submit(type, payload, **options)

    async def submit_many(
        self, tasks: Iterable[Mapping[str, Any]]
    ) -> builtins.list[Task | ApiError]:
        return self.recorder.submit_many(tasks)

    async def get(self, task: str | uuid.UUID) -> Task:
        return self.recorder.get(task)

    async def cancel(self, task: str | uuid.UUID) -> Task:
        return self.recorder.cancel(task)
