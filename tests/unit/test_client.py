"""The Python client without a server: error mapping, retries and their idempotency keys,
validation before any request, batching, and ``wait`` against servers that hold a
``?wait=`` and ones that do not (httpx's MockTransport plays the API; ``wait`` is also driven
as a flow with a fake clock)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import taskstream
from taskstream.shared.client import flows
from taskstream.shared.client.flows import Answer, Call, NoAnswer, Settings, Sleep

FAST = taskstream.RetryPolicy(retries=3, base_s=0.0, max_s=0.0)
TASK_ID = uuid.UUID("0190c1a2-0000-7000-8000-000000000001")


def task_json(status: str = "queued", **extra: Any) -> dict[str, Any]:
    return {"id": str(TASK_ID), "type": "noop", "status": status, "priority": "default",
            "payload": {}, "attempt": 1, "max_attempts": 5, **extra}  # fmt: skip


def error(status: int, code: str, message: str = "no", field: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return httpx.Response(status, json={"error": body})


def client(handler: Callable[[httpx.Request], httpx.Response], **kw: Any) -> taskstream.Client:
    return taskstream.Client(
        "http://api.test", transport=httpx.MockTransport(handler), retry=FAST, **kw
    )


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "invalid", taskstream.BadRequest),
        (401, "unauthorized", taskstream.Unauthorized),
        (403, "forbidden", taskstream.Forbidden),
        (404, "not_found", taskstream.NotFound),
        (409, "idempotency_conflict", taskstream.Conflict),
        (413, "too_large", taskstream.TooLarge),
        (422, "invalid", taskstream.ValidationError),
        (429, "rate_limited", taskstream.RateLimited),
        (500, "internal", taskstream.ServerError),
        (503, "unavailable", taskstream.Unavailable),
    ],
)
def test_api_errors_are_typed_by_status_and_keep_code_and_field(
    status: int, code: str, cls: type[taskstream.ApiError]
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        response = error(status, code, "bad thing", "max_attempts")
        response.headers["Retry-After"] = "7"
        return response

    with client(answer) as c, pytest.raises(cls) as caught:
        c.get(TASK_ID)
    assert isinstance(caught.value, taskstream.TaskstreamError)
    e = caught.value
    assert (e.status, e.code, e.message, e.field) == (status, code, "bad thing", "max_attempts")
    if status == 429:
        assert e.retry_after == 7.0


def test_an_answer_that_is_not_the_apis_json_is_still_a_typed_error() -> None:
    gateway = client(lambda r: httpx.Response(502, text="<html>bad gateway</html>"))
    with gateway as c, pytest.raises(taskstream.Unavailable) as caught:
        c.get(TASK_ID)
    assert caught.value.code == "http_error" and "bad gateway" in caught.value.message


def test_submit_retries_connection_failures_and_503_with_the_same_idempotency_key() -> None:
    bodies: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        if len(bodies) == 1:
            raise httpx.ConnectError("refused", request=request)
        if len(bodies) == 2:
            raise httpx.ReadError("cut after sending", request=request)
        if len(bodies) == 3:
            return error(503, "unavailable")
        return httpx.Response(201, json=task_json())

    with client(answer) as c:
        task = c.submit("noop", {"a": 1})
    assert task.id == TASK_ID and len(bodies) == 4
    keys = {b["idempotency_key"] for b in bodies}
    assert len(keys) == 1 and next(iter(keys)).startswith("ts-")
    assert all(b == bodies[0] for b in bodies)


def test_the_callers_idempotency_key_is_sent_as_given() -> None:
    seen: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(201, json=task_json())

    with client(answer) as c:
        c.submit("noop", None, idempotency_key="order-42", priority="high", max_attempts=3)
    assert seen == [{"type": "noop", "payload": {}, "idempotency_key": "order-42",
                     "priority": "high", "max_attempts": 3}]  # fmt: skip


def test_retries_are_bounded_and_end_in_unavailable_or_connection_failed() -> None:
    calls: list[int] = []

    def down(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return error(503, "unavailable")

    with client(down) as c, pytest.raises(taskstream.Unavailable):
        c.submit("noop")
    assert len(calls) == FAST.retries + 1

    def refused(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("refused", request=request)

    calls.clear()
    with client(refused) as c, pytest.raises(taskstream.ConnectionFailed) as caught:
        c.get(TASK_ID)
    assert len(calls) == FAST.retries + 1 and isinstance(caught.value.__cause__, httpx.ConnectError)


def test_a_replay_is_retried_only_when_the_request_surely_was_not_sent() -> None:
    calls: list[int] = []

    def cut(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ReadError("cut", request=request)

    with client(cut) as c, pytest.raises(taskstream.ConnectionFailed):
        c.dlq.replay(all=True)
    assert len(calls) == 1

    def refused_once(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ConnectError("refused", request=request)
        done = {"action": "replay", "dry_run": False, "count": 0}
        return httpx.Response(200, json={**done, "tasks": [], "truncated": False, "missing": []})

    calls.clear()
    with client(refused_once) as c:
        assert c.dlq.replay(all=True).count == 0
    assert len(calls) == 2


def test_other_4xx_are_not_retried() -> None:
    calls: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return error(429, "rate_limited")

    with client(answer) as c, pytest.raises(taskstream.RateLimited):
        c.submit("noop")
    assert calls == [1]


@pytest.mark.parametrize(
    ("args", "options", "field"),
    [
        (("",), {}, "type"),
        (("noop", {"f": object()}), {}, "payload"),
        (("noop",), {"priorty": "high"}, "priorty"),
        (("noop",), {"idempotency_key": ""}, "idempotency_key"),
        (("noop",), {"delay_ms": 5, "run_at": "2030-01-01T00:00:00Z"}, "delay_ms"),
    ],
)
def test_input_that_cannot_be_sent_is_a_validation_error_before_any_request(
    args: tuple[Any, ...], options: dict[str, Any], field: str
) -> None:
    calls: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(201, json=task_json())

    with client(answer) as c, pytest.raises(taskstream.ValidationError) as caught:
        c.submit(*args, **options)
    assert caught.value.field == field and caught.value.status is None
    with client(answer) as c, pytest.raises(taskstream.ValidationError) as caught:
        c.get("not-a-uuid")
    assert caught.value.field == "id"
    assert calls == []


def batch_server(limit: int, sizes: list[int]) -> Callable[[httpx.Request], httpx.Response]:
    """A batch route taking at most ``limit`` tasks, refusing priority "bad" per task."""

    def answer(request: httpx.Request) -> httpx.Response:
        tasks = json.loads(request.content)["tasks"]
        sizes.append(len(tasks))
        if len(tasks) > limit:
            return error(413, "batch_too_large", f"at most {limit}", "tasks")
        results: list[dict[str, Any]] = []
        for i, t in enumerate(tasks):
            if t.get("priority") == "bad":
                results.append({"error": {"code": "invalid", "message": "no such priority",
                                          "field": f"tasks[{i}].priority"}})  # fmt: skip
            else:
                view = task_json(id=str(uuid.uuid4()), type=t["type"], payload=t["payload"])
                results.append({"id": view["id"], "status": "queued", "created": True,
                                "task": view})  # fmt: skip
        return httpx.Response(200, json={"results": results})

    return answer


def test_submit_many_chunks_keeps_order_and_gives_each_task_its_own_error() -> None:
    sizes: list[int] = []
    items: list[Any] = [{"type": "t", "payload": {"n": n}} for n in range(10)]
    items[4]["priority"] = "bad"  # refused by the API, in the second chunk
    items[7] = {"type": "t", "payload": {"n": object()}}  # refused before sending
    with client(batch_server(100, sizes), batch_size=3) as c:
        results = c.submit_many(items)
    assert sizes == [3, 3, 3]  # 9 sent: item 7 never left
    assert len(results) == 10
    for n, r in enumerate(results):
        if n in (4, 7):
            assert isinstance(r, taskstream.ValidationError)
        else:
            assert isinstance(r, taskstream.Task) and r.payload == {"n": n}
    assert results[4].field == "tasks[4].priority"  # type: ignore[union-attr]
    assert results[7].field == "tasks[7].payload"  # type: ignore[union-attr]


def test_submit_many_splits_a_chunk_the_api_finds_too_large() -> None:
    sizes: list[int] = []
    with client(batch_server(3, sizes), batch_size=8) as c:
        results = c.submit_many([{"type": "t", "payload": {"n": n}} for n in range(8)])
    assert [r.payload["n"] for r in results if isinstance(r, taskstream.Task)] == list(range(8))
    assert sizes == [8, 4, 2, 2, 4, 2, 2]


def test_submit_many_gives_a_chunks_failure_to_it_and_everything_after() -> None:
    sizes: list[int] = []
    inner = batch_server(100, sizes)

    def answer(request: httpx.Request) -> httpx.Response:
        return inner(request) if not sizes else error(401, "unauthorized")

    with client(answer, batch_size=2) as c:
        results = c.submit_many([{"type": "t"} for _ in range(6)])
    assert [type(r).__name__ for r in results] == ["Task"] * 2 + ["Unauthorized"] * 4


def test_url_and_key_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=task_json())

    monkeypatch.setenv("TASKSTREAM_URL", "http://env.test:9999/prefix/")
    monkeypatch.setenv("TASKSTREAM_API_KEY", "tsk_secret")
    with taskstream.Client(transport=httpx.MockTransport(answer)) as c:
        c.get(TASK_ID)
    assert str(seen[0].url) == f"http://env.test:9999/prefix/v1/tasks/{TASK_ID}"
    assert seen[0].headers["authorization"] == "Bearer tsk_secret"
    monkeypatch.delenv("TASKSTREAM_API_KEY")
    with taskstream.Client("http://arg.test", transport=httpx.MockTransport(answer)) as c:
        c.get(TASK_ID)
    assert seen[1].url.host == "arg.test" and "authorization" not in seen[1].headers


def test_cancel_of_a_task_already_cancelled_returns_it() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return error(409, "not_cancellable")
        return httpx.Response(200, json=task_json("cancelled"))

    with client(answer) as c:
        assert c.cancel(TASK_ID).status == "cancelled"

    def running(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return error(409, "not_cancellable")
        return httpx.Response(200, json=task_json("running"))

    with client(running) as c, pytest.raises(taskstream.Conflict):
        c.cancel(TASK_ID)


def test_list_follows_the_cursor_until_the_last_page() -> None:
    pages: dict[str | None, tuple[list[str], str | None]] = {
        None: (["a", "b"], "c1"),
        "c1": (["c", "d"], "c2"),
        "c2": (["e"], None),
    }
    asked: list[dict[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        asked.append(params)
        types, cursor = pages[params.get("cursor")]
        tasks = [task_json(id=str(uuid.uuid4()), type=t) for t in types]
        return httpx.Response(200, json={"tasks": tasks, "next_cursor": cursor})

    with client(answer) as c:
        listing = c.list(status="queued", page_size=2)
        assert asked == []  # lazy: nothing read until iterated
        assert [t.type for t in listing] == ["a", "b", "c", "d", "e"]
    assert asked[0] == {"status": "queued", "limit": "2"}
    assert asked[2] == {"status": "queued", "limit": "2", "cursor": "c2"}


async def test_the_async_client_makes_the_same_calls() -> None:
    bodies: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        dead = task_json("dead", last_error={"type": "Boom", "message": "it broke"})
        if request.url.path == "/v1/tasks" and request.method == "GET":
            return httpx.Response(200, json={"tasks": [dead], "next_cursor": None})
        if request.method == "GET":
            return httpx.Response(200, json=dead)
        bodies.append(json.loads(request.content))
        if len(bodies) == 1:
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(201, json=task_json())

    transport = httpx.MockTransport(answer)
    async with taskstream.AsyncClient("http://api.test", transport=transport, retry=FAST) as c:
        task = await c.submit("noop", {"x": 1})
        with pytest.raises(taskstream.TaskFailed) as caught:
            await c.wait(task.id, timeout=5)
        assert [t.status async for t in c.list()] == ["dead"]
    assert bodies[0] == bodies[1]
    assert caught.value.error is not None and caught.value.error.type == "Boom"


class Script:
    """Drives a flow: answers its calls from ``server`` and advances a fake clock by its
    sleeps and by how long the server held each call."""

    def __init__(self, server: Callable[[Call, float], tuple[float, Answer]]) -> None:
        self.now = 0.0
        self.server = server
        self.calls: list[Call] = []
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def run(self, flow: flows.Flow[Any]) -> Any:
        outcome: Any = None
        while True:
            try:
                step = flow.throw(outcome) if isinstance(outcome, NoAnswer) else flow.send(outcome)
            except StopIteration as stop:
                return stop.value
            if isinstance(step, Sleep):
                self.sleeps.append(step.seconds)
                self.now += step.seconds
                outcome = None
            else:
                self.calls.append(step)
                held, outcome = self.server(step, self.now)
                self.now += held


def answer_task(status: str, **extra: Any) -> Answer:
    return Answer(200, json.dumps(task_json(status, **extra)).encode(), {})


def test_wait_asks_the_api_to_hold_the_request_and_returns_when_it_ends() -> None:
    ends_at = 45.0

    def holding(call: Call, now: float) -> tuple[float, Answer]:
        hold = float((call.params or {}).get("wait", 0))
        if now + hold >= ends_at:
            return ends_at - now, answer_task("succeeded", result={"ok": True})
        return hold, answer_task("running")

    script = Script(holding)
    task = script.run(flows.wait(Settings(FAST, clock=script.clock), TASK_ID, 100))
    assert task.status == "succeeded" and task.result == {"ok": True}
    assert [c.params for c in script.calls] == [{"wait": "30"}, {"wait": "30"}]
    assert script.sleeps == [] and script.now == ends_at


def test_wait_polls_an_api_that_answers_at_once() -> None:
    def immediate(call: Call, now: float) -> tuple[float, Answer]:
        return 0.0, answer_task("succeeded" if now >= 2.0 else "queued")

    script = Script(immediate)
    task = script.run(flows.wait(Settings(FAST, clock=script.clock), TASK_ID, 10))
    assert task.status == "succeeded"
    assert script.sleeps[:5] == [0.05, 0.1, 0.2, 0.4, 0.8] and max(script.sleeps) == 1.0
    assert script.now < 3.0


def test_wait_never_asks_past_its_deadline_and_times_out() -> None:
    def holding(call: Call, now: float) -> tuple[float, Answer]:
        return float((call.params or {}).get("wait", 0)), answer_task("running")

    script = Script(holding)
    with pytest.raises(taskstream.WaitTimeout) as caught:
        script.run(flows.wait(Settings(FAST, clock=script.clock), TASK_ID, 42.5))
    assert [c.params for c in script.calls][:2] == [{"wait": "30"}, {"wait": "12"}]
    assert script.now <= 42.5 + 1e-9 and caught.value.task.status == "running"
    assert isinstance(caught.value, TimeoutError)


@pytest.mark.parametrize(("status", "cls"), [("dead", taskstream.TaskFailed),
                                            ("cancelled", taskstream.TaskCancelled)])  # fmt: skip
def test_wait_raises_task_failed_with_the_recorded_error(
    status: str, cls: type[taskstream.TaskFailed]
) -> None:
    error = {"type": "ValueError", "message": "bad input", "traceback": "Traceback …"}
    script = Script(lambda call, now: (0.0, answer_task(status, last_error=error)))
    with pytest.raises(cls) as caught:
        script.run(flows.wait(Settings(FAST, clock=script.clock), TASK_ID, 5))
    assert caught.value.task.status == status
    assert caught.value.error is not None and caught.value.error.message == "bad input"
    assert "ValueError: bad input" in str(caught.value)


def test_backoff_doubles_with_jitter_up_to_its_cap_and_honours_retry_after() -> None:
    import random

    policy = taskstream.RetryPolicy(retries=10, base_s=0.1, max_s=1.0)
    rand = random.Random(1)
    delays = [policy.delay(n, None, rand) for n in range(6)]
    for n, d in enumerate(delays):
        ceiling = min(1.0, 0.1 * 2**n)
        assert ceiling / 2 <= d <= ceiling
    assert policy.delay(0, 5.0, rand) == 1.0  # Retry-After, capped at max_s
    assert policy.delay(0, 0.5, rand) == 0.5
