"""ingest.validate: request bodies → validated tasks, failures → named fields."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import pytest

from taskstream.services.ingest.errors import Invalid
from taskstream.services.ingest.validate import (
    convert_task,
    decode_go_task,
    decode_task,
    describe,
    new_task,
)
from taskstream.shared import config as config_mod
from taskstream.shared.models import Backoff, TaskRequest, request_hash

NOW = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
CONFIG = config_mod.load(
    {},
    max_attempts=7,
    retry_base_ms=111,
    retry_max_ms=2222,
    retry_jitter_ms=33,
    task_timeout_ms=4444,
)


def error_of(item: Any) -> msgspec.ValidationError:
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert(item, TaskRequest)
    return info.value


# describe(): which field a msgspec message names


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({}, "type"),
        ({"type": "a b"}, "type"),
        ({"type": "a", "colour": "red"}, "colour"),
        ({"type": "a", "priority": "urgent"}, "priority"),
        ({"type": "a", "max_attempts": "x"}, "max_attempts"),
        ({"type": "a", "backoff": {"base_ms": -1}}, "backoff.base_ms"),
        ({"type": "a", "backoff": {"colour": 1}}, "backoff.colour"),
        ({"type": "a", "run_at": "2030-01-01T00:00:00"}, "run_at"),
    ],
)
def test_describe_names_the_field_including_nested_paths(item: Any, field: str) -> None:
    error = describe(error_of(item))
    assert error.code == "invalid"
    assert error.field == field
    assert " - at `$" not in error.message  # the path went into `field`, not the message


def test_describe_prefixes_the_field_of_a_batch_element() -> None:
    assert describe(error_of({}), "tasks[3]").field == "tasks[3].type"
    nested = error_of({"type": "a", "backoff": {"max_ms": -5}})
    assert describe(nested, "tasks[0]").field == "tasks[0].backoff.max_ms"


def test_describe_of_a_non_object_element_names_the_element() -> None:
    assert describe(error_of(5), "tasks[1]").field == "tasks[1]"
    assert describe(error_of(5)).field is None


def test_convert_task_raises_422_with_the_prefixed_field() -> None:
    with pytest.raises(Invalid) as info:
        convert_task({"type": "ok", "timeout_ms": 0}, "tasks[2]")
    assert info.value.status == 422
    assert info.value.error.field == "tasks[2].timeout_ms"


# decode_task(): bytes → TaskRequest


def test_decode_task_malformed_json_is_400_invalid_json() -> None:
    with pytest.raises(Invalid) as info:
        decode_task(b"{not json")
    assert info.value.status == 400
    assert info.value.error.code == "invalid_json"


@pytest.mark.parametrize("decode", [decode_task, decode_go_task])
@pytest.mark.parametrize("body", [b"1 x", b"[] ]", b'"a" 2'])
def test_a_valid_json_start_followed_by_garbage_is_400_not_500(decode: Any, body: bytes) -> None:
    # The typed decoder stops at the wrong type before it sees the garbage (found by the fuzzer).
    with pytest.raises(Invalid) as info:
        decode(body)
    assert info.value.status == 400
    assert info.value.error.code == "invalid_json"


def test_decode_task_wrong_shape_is_422_naming_the_field() -> None:
    with pytest.raises(Invalid) as info:
        decode_task(b'{"type": "ok", "delay_ms": -1}')
    assert info.value.status == 422
    assert info.value.error.field == "delay_ms"


# new_task(): defaults, overrides and the start time


def test_new_task_fills_defaults_from_the_config() -> None:
    task = new_task(TaskRequest(type="email.send"), CONFIG)
    assert task.type == "email.send"
    assert task.priority == "default"
    assert task.payload == b"{}"
    assert task.run_at is None and task.delay_ms is None
    assert task.max_attempts == 7
    assert (task.retry_base_ms, task.retry_max_ms, task.retry_jitter_ms) == (111, 2222, 33)
    assert task.timeout_ms == 4444
    assert task.idempotency_key is None and task.request_hash is None


def test_new_task_gives_each_task_a_fresh_id() -> None:
    req = TaskRequest(type="a")
    assert new_task(req, CONFIG).id != new_task(req, CONFIG).id


def test_new_task_keeps_per_task_overrides() -> None:
    req = TaskRequest(
        type="a",
        priority="critical",
        payload={"to": "x@example.com"},
        max_attempts=2,
        timeout_ms=1500,
        backoff=Backoff(base_ms=5, jitter_ms=0),
    )
    task = new_task(req, CONFIG)
    assert task.priority == "critical"
    assert msgspec.json.decode(task.payload) == {"to": "x@example.com"}
    assert task.max_attempts == 2
    assert task.timeout_ms == 1500
    # Given fields override (an explicit 0 included); the missing one keeps the default.
    assert (task.retry_base_ms, task.retry_max_ms, task.retry_jitter_ms) == (5, 2222, 0)


def test_the_delay_and_run_at_go_to_postgres_as_given() -> None:
    # Postgres adds the delay to its own now() and compares run_at with it (ingest's clock
    # may be off): see tests/integration/test_faults_clocks.py.
    task = new_task(TaskRequest(type="a", delay_ms=1500), CONFIG)
    assert (task.delay_ms, task.run_at) == (1500, None)
    at = NOW + dt.timedelta(hours=1)
    task = new_task(TaskRequest(type="a", run_at=at), CONFIG)
    assert (task.delay_ms, task.run_at) == (None, at)
    assert new_task(TaskRequest(type="a", delay_ms=0), CONFIG).delay_ms is None


def test_run_at_with_delay_ms_is_rejected_naming_delay_ms() -> None:
    req = TaskRequest(type="a", run_at=NOW, delay_ms=10)
    with pytest.raises(Invalid) as info:
        new_task(req, CONFIG)
    assert info.value.status == 422
    assert info.value.error.field == "delay_ms"


def test_request_hash_is_kept_only_with_an_idempotency_key() -> None:
    req = TaskRequest(type="a", payload={"b": 1, "a": 2}, idempotency_key="k")
    task = new_task(req, CONFIG)
    assert task.idempotency_key == "k"
    assert task.request_hash == request_hash(req)


def test_request_hash_ignores_key_order_but_not_values() -> None:
    one = TaskRequest(type="a", payload={"a": 1, "b": 2}, idempotency_key="k")
    same = TaskRequest(type="a", payload={"b": 2, "a": 1}, idempotency_key="k")
    other = TaskRequest(type="a", payload={"a": 1, "b": 3}, idempotency_key="k")
    assert request_hash(one) == request_hash(same)
    assert request_hash(one) != request_hash(other)


# decode_go_task(): the Go scheduler's body mapped onto ours


def test_go_body_maps_max_retries_to_attempts_after_the_first() -> None:
    body = b'{"type": "report", "priority": "high", "payload": {"n": 1}, "max_retries": 2}'
    req = decode_go_task(body)
    assert req == TaskRequest(type="report", priority="high", payload={"n": 1}, max_attempts=3)
    assert new_task(req, CONFIG).max_attempts == 3


def test_go_body_zero_retries_is_one_attempt() -> None:
    assert decode_go_task(b'{"type": "a", "max_retries": 0}').max_attempts == 1


def test_go_body_without_max_retries_keeps_the_default_attempts() -> None:
    req = decode_go_task(b'{"type": "a", "idempotency_key": "k"}')
    assert req.max_attempts is None and req.idempotency_key == "k"
    assert new_task(req, CONFIG).max_attempts == CONFIG.tasks.max_attempts


def test_go_body_errors_name_the_field() -> None:
    with pytest.raises(Invalid) as info:
        decode_go_task(b'{"type": "a", "max_retries": -1}')
    assert (info.value.status, info.value.error.field) == (422, "max_retries")
    with pytest.raises(Invalid) as info:
        decode_go_task(b"{not json")
    assert (info.value.status, info.value.error.code) == (400, "invalid_json")
