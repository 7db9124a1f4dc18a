"""``taskstream.testing``: handlers run with a real Context, the payload through JSON and the
typed decode, their submits recorded; the recorders as drop-ins for the clients."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import msgspec
import pytest

import taskstream
import taskstream.testing
from taskstream.shared.client.protocols import Submitter
from taskstream.shared.handlers import Context, Registry

registry = Registry()


class Signup(msgspec.Struct, frozen=True):
    user_id: int
    email: str


class Email(msgspec.Struct, frozen=True):
    to: str
    subject: str


@taskstream.task("email.send", priority="high", registry=registry)
async def send_email(email: Email, ctx: Context) -> dict[str, str]:
    return {"sent_to": email.to}


@taskstream.task("user.signup", max_attempts=2, registry=registry)
async def signup(user: Signup, ctx: Context) -> int:
    await send_email.submit(ctx.client, Email(to=user.email, subject="Welcome"))
    await ctx.client.submit(
        "audit.log", {"user_id": user.user_id}, idempotency_key=f"a-{ctx.task_id}"
    )
    return user.user_id


@registry.handler("report.build")
def build_report(payload: dict[str, Any], ctx: Context) -> str:
    send_email.submit(ctx.sync_client, {"to": payload["owner"], "subject": "report ready"})
    return f"report for {payload['owner']}"


async def test_run_gives_the_result_a_real_context_and_the_recorded_submits() -> None:
    run = await taskstream.testing.run(signup, Signup(user_id=7, email="ada@example.com"))
    assert run.result == 7
    assert (run.ctx.type, run.ctx.attempt, run.ctx.max_attempts) == ("user.signup", 1, 2)
    assert isinstance(run.ctx, Context) and run.ctx.idempotency_key.endswith(":1")
    [email, audit] = run.submitted
    assert (email.type, email.payload) == (
        "email.send",
        {"to": "ada@example.com", "subject": "Welcome"},
    )
    assert email.options == {"priority": "high"}
    assert email.task.status == "queued" and email.task.priority == "high"
    assert audit.options == {"idempotency_key": f"a-{run.ctx.task_id}"}
    assert run.recorder.of_type("audit.log") == [audit]


async def test_the_payload_goes_through_json_and_the_typed_decode() -> None:
    run = await taskstream.testing.run(signup, {"user_id": 8, "email": "bob@example.com"})
    assert run.result == 8
    with pytest.raises(taskstream.PayloadError, match=r"\$.user_id"):
        await taskstream.testing.run(signup, {"user_id": "eight", "email": "x"})
    with pytest.raises(taskstream.TaskstreamError, match="JSON"):
        await taskstream.testing.run(signup, {"user_id": object()})


def test_run_sync_runs_a_plain_handler_with_the_sync_client_recorded() -> None:
    run = taskstream.testing.run_sync(build_report, {"owner": "cy@example.com"}, registry=registry)
    assert run.result == "report for cy@example.com"
    assert run.ctx.type == "report.build"  # found in the registry
    [email] = run.submitted
    assert email.type == "email.send" and email.payload["to"] == "cy@example.com"


def test_run_sync_runs_an_async_handler_too() -> None:
    run = taskstream.testing.run_sync(send_email, {"to": "d@example.com", "subject": "s"})
    assert run.result == {"sent_to": "d@example.com"} and run.submitted == []


async def test_run_sync_refuses_to_run_inside_an_event_loop() -> None:
    with pytest.raises(taskstream.TaskstreamError, match="await"):
        taskstream.testing.run_sync(send_email, {"to": "x", "subject": "y"})


async def test_whatever_the_handler_raises_is_raised() -> None:
    @registry.handler("fails")
    async def fails(payload: Any, ctx: Context) -> None:
        raise taskstream.NonRetryableError("no such user")

    with pytest.raises(taskstream.NonRetryableError, match="no such user"):
        await taskstream.testing.run(fails, {}, registry=registry)


async def test_a_result_that_cannot_be_stored_is_an_error() -> None:
    async def returns_an_object(payload: Any, ctx: Context) -> object:
        return object()

    with pytest.raises(taskstream.TaskstreamError, match="cannot be stored"):
        await taskstream.testing.run(returns_an_object, {})


async def test_a_slow_async_handler_times_out_like_in_an_executor() -> None:
    async def slow(payload: Any, ctx: Context) -> None:
        await asyncio.Event().wait()

    with pytest.raises(TimeoutError):
        await taskstream.testing.run(slow, {}, timeout=0.01)


async def test_a_transactional_handler_needs_a_connection_and_gets_it_as_ctx_db() -> None:
    @taskstream.task("pay", transactional=True, registry=registry)
    async def pay(payload: dict[str, Any], ctx: Context) -> None:
        assert ctx.db is not None
        await ctx.db.execute("INSERT INTO payments VALUES ($1)", payload["amount"])

    with pytest.raises(taskstream.TaskstreamError, match="db="):
        await taskstream.testing.run(pay, {"amount": 5})

    class FakeTx:
        def __init__(self) -> None:
            self.statements: list[tuple[str, tuple[Any, ...]]] = []

        async def execute(self, query: str, *args: Any) -> str:
            self.statements.append((query, args))
            return "INSERT 0 1"

    tx = FakeTx()
    await taskstream.testing.run(pay, {"amount": 5}, db=tx)  # type: ignore[arg-type]
    assert tx.statements == [("INSERT INTO payments VALUES ($1)", (5,))]


def test_the_recorder_is_a_drop_in_client_with_idempotency_keys_and_errors() -> None:
    def enqueue_order(client: Submitter, n: int) -> uuid.UUID:
        return client.submit("order.ship", {"n": n}, idempotency_key=f"order-{n}").id

    recorder = taskstream.testing.Recorder()
    first = enqueue_order(recorder, 1)
    assert enqueue_order(recorder, 1) == first  # the same key and body: the same task
    assert len(recorder.submitted) == 1
    with pytest.raises(taskstream.Conflict):
        recorder.submit("order.ship", {"n": 2}, idempotency_key="order-1")
    with pytest.raises(taskstream.ValidationError):
        recorder.submit("order.ship", {"n": 1}, priorty="high")  # type: ignore[call-arg]
    results = recorder.submit_many([{"type": "a"}, {"type": ""}, {"type": "b", "delay_ms": 10}])
    assert [type(r).__name__ for r in results] == ["Task", "ValidationError", "Task"]
    assert isinstance(results[2], taskstream.Task) and results[2].status == "scheduled"
    assert recorder.get(first).id == first
    assert recorder.cancel(first).status == "cancelled"
    assert recorder.submitted[0].task.status == "cancelled"
    with pytest.raises(taskstream.NotFound):
        recorder.get(uuid.uuid4())


async def test_the_async_recorder_shares_the_record() -> None:
    recorder = taskstream.testing.Recorder()
    await recorder.aio.submit("a", {"x": 1})
    recorder.submit("b")
    assert [s.type for s in recorder.aio.submitted] == ["a", "b"]
    alone = taskstream.testing.AsyncRecorder()
    task = await alone.submit("c")
    assert (await alone.get(task.id)).type == "c" and len(alone.submitted) == 1


async def test_concurrent_runs_record_apart() -> None:
    runs = await asyncio.gather(
        *(taskstream.testing.run(signup, Signup(user_id=n, email=f"u{n}@x.y")) for n in range(5))
    )
    for n, run in enumerate(runs):
        assert run.recorder.of_type("email.send")[0].payload["to"] == f"u{n}@x.y"
        assert len(run.submitted) == 2


async def test_outside_a_test_run_ctx_client_is_a_real_client_shared_by_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKSTREAM_URL", "http://ingest.example:8080")
    c = Context(task_id=uuid.uuid4(), attempt=1, attempt_number=1, max_attempts=1, type="t",
                priority="default", deadline=0.0)  # fmt: skip
    client = c.client
    assert isinstance(client, taskstream.AsyncClient)
    assert client.url == "http://ingest.example:8080" and c.client is client
    sync = await asyncio.to_thread(lambda: c.sync_client)
    assert isinstance(sync, taskstream.Client) and c.sync_client is sync
