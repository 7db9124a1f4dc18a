"""Typed task definitions (``@taskstream.task``): registration for executors, payloads
validated and encoded on submit (before any request), decoded for the handler."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from typing import Annotated, Any

import httpx
import msgspec
import pytest

import taskstream
from taskstream.shared.handlers import Context, Registry


class Email(msgspec.Struct, frozen=True):
    to: Annotated[str, msgspec.Meta(pattern="^[^@]+@[^@]+$")]
    subject: str
    send_at: dt.datetime | None = None


@dataclasses.dataclass
class Resize:
    image_id: uuid.UUID
    width: int = 640


def ctx(task_type: str = "t") -> Context:
    return Context(task_id=uuid.uuid4(), attempt=1, attempt_number=1, max_attempts=5,
                   type=task_type, priority="default", deadline=0.0)  # fmt: skip


def recording_client() -> tuple[taskstream.Client, list[dict[str, Any]]]:
    sent: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append(body)
        task = {"id": str(uuid.uuid4()), "type": body["type"], "status": "queued",
                "payload": body["payload"]}  # fmt: skip
        return httpx.Response(201, json=task)

    return taskstream.Client("http://api.test", transport=httpx.MockTransport(answer)), sent


async def test_a_typed_task_is_registered_and_its_handler_gets_the_decoded_struct() -> None:
    registry = Registry()
    seen: list[Any] = []

    @taskstream.task("email.send", priority="high", max_attempts=3, registry=registry)
    async def send_email(email: Email, ctx: Context) -> str:
        seen.append(email)
        return email.to

    assert isinstance(send_email, taskstream.TaskDefinition)
    assert send_email.payload_type is Email and send_email.type == "email.send"
    assert registry.types() == ["email.send"]
    registered = registry.get("email.send")
    assert registered is not None and registered.is_async and not registered.transactional
    wire = {"to": "ada@example.com", "subject": "hi", "send_at": "2030-01-01T00:00:00Z"}
    assert await registered.fn(wire, ctx()) == "ada@example.com"
    assert seen == [Email(to="ada@example.com", subject="hi",
                          send_at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))]  # fmt: skip
    # The definition itself is still the handler, called with the typed payload.
    assert await send_email(Email(to="b@example.com", subject="x"), ctx()) == "b@example.com"


def test_a_dataclass_payload_and_a_plain_function_run_decoded_too() -> None:
    registry = Registry()

    @taskstream.task("image.resize", registry=registry)
    def resize(job: Resize, ctx: Context) -> int:
        return job.width

    registered = registry.get("image.resize")
    assert registered is not None and not registered.is_async
    assert registered.fn({"image_id": str(uuid.uuid4())}, ctx()) == 640


def test_an_untyped_task_registers_the_function_itself() -> None:
    registry = Registry()

    @taskstream.task("raw", registry=registry)
    async def raw(payload: dict[str, Any], ctx: Context) -> None: ...

    assert raw.payload_type is None
    entry = registry.get("raw")
    assert entry is not None and entry.fn is raw.fn  # no extra step per task


def test_a_payload_that_does_not_decode_fails_without_retry_naming_the_field() -> None:
    registry = Registry()

    @taskstream.task("email.send", registry=registry)
    def send(email: Email, ctx: Context) -> None: ...

    entry = registry.get("email.send")
    assert entry is not None
    with pytest.raises(taskstream.PayloadError) as caught:
        entry.fn({"to": 7, "subject": "x"}, ctx())
    assert isinstance(caught.value, taskstream.NonRetryableError)
    assert "Email" in str(caught.value) and "$.to" in str(caught.value)


def test_submit_sends_the_encoded_payload_with_the_definitions_defaults() -> None:
    registry = Registry()

    @taskstream.task("email.send", priority="high", max_attempts=3, registry=registry)
    async def send(email: Email, ctx: Context) -> None: ...

    client, sent = recording_client()
    with client:
        send.submit(client, Email(to="ada@example.com", subject="hi"))
        send.submit(client, {"to": "bob@example.com", "subject": "yo"}, priority="low")
    assert sent[0]["payload"] == {"to": "ada@example.com", "subject": "hi", "send_at": None}
    assert (sent[0]["priority"], sent[0]["max_attempts"]) == ("high", 3)
    assert (sent[1]["priority"], sent[1]["max_attempts"]) == ("low", 3)
    assert sent[1]["payload"]["to"] == "bob@example.com"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"subject": "no recipient"}, "payload.to"),
        ({"to": "ada@example.com", "subject": 5}, "payload.subject"),
        ({"to": "not an address", "subject": "x"}, "payload.to"),  # a constraint of the type
        (Email(to="not an address", subject="x"), "payload.to"),  # built without validation
        ("a string", "payload"),
    ],
)
def test_a_wrong_payload_is_refused_before_any_request(payload: Any, field: str) -> None:
    registry = Registry()

    @taskstream.task("email.send", registry=registry)
    async def send(email: Email, ctx: Context) -> None: ...

    client, sent = recording_client()
    with client, pytest.raises(taskstream.ValidationError) as caught:
        send.submit(client, payload)
    assert caught.value.field == field
    assert sent == []


async def test_submit_through_an_async_client_is_awaited() -> None:
    registry = Registry()

    @taskstream.task("image.resize", registry=registry)
    async def resize(job: Resize, ctx: Context) -> None: ...

    sent: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(201, json={"id": str(uuid.uuid4()), "type": "image.resize",
                                         "status": "queued"})  # fmt: skip

    image = uuid.uuid4()
    transport = httpx.MockTransport(answer)
    async with taskstream.AsyncClient("http://api.test", transport=transport) as client:
        task = await resize.submit(client, Resize(image_id=image))
    assert task.status == "queued"
    assert sent[0]["payload"] == {"image_id": str(image), "width": 640}


def test_spec_builds_an_item_of_submit_many() -> None:
    registry = Registry()

    @taskstream.task("email.send", priority="high", registry=registry)
    async def send(email: Email, ctx: Context) -> None: ...

    item = send.spec({"to": "a@b.c", "subject": "s"}, idempotency_key="k1")
    assert item == {"type": "email.send", "priority": "high", "idempotency_key": "k1",
                    "payload": {"to": "a@b.c", "subject": "s", "send_at": None}}  # fmt: skip


def test_definitions_refuse_what_cannot_work() -> None:
    registry = Registry()
    with pytest.raises(taskstream.TaskstreamError, match="idempotency_key"):
        taskstream.task("x", registry=registry, idempotency_key="same-for-all")
    with pytest.raises(taskstream.TaskstreamError, match="payload, ctx"):

        @taskstream.task("y", registry=registry)  # type: ignore[arg-type]
        async def one_argument(payload: Any) -> None: ...

    with pytest.raises(taskstream.TaskstreamError, match="is already registered"):

        @taskstream.task("noop")  # the executors' registry has the built-in noop
        async def noop(payload: Any, ctx: Context) -> None: ...

    with pytest.raises(taskstream.TaskstreamError, match="transactional"):

        @taskstream.task("z", transactional=True, registry=registry)
        def sync_tx(payload: Any, ctx: Context) -> None: ...
