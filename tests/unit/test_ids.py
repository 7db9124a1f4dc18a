"""Task ids are version 7 UUIDs: the creation time first, so they sort by it."""

from __future__ import annotations

import time
import uuid

import pytest

from taskstream.shared import ids as ids_mod
from taskstream.shared.ids import new_id


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a process that made no id yet; the real state comes back after."""
    monkeypatch.setattr(ids_mod, "_last_ms", -1)
    monkeypatch.setattr(ids_mod, "_counter", 0)


def test_ids_are_version_7_with_the_rfc_variant() -> None:
    ids = [new_id() for _ in range(1000)]
    assert {i.version for i in ids} == {7}
    assert {i.variant for i in ids} == {uuid.RFC_4122}
    assert len(set(ids)) == 1000
    assert all(uuid.UUID(str(i)) == i for i in ids)


def test_an_id_starts_with_its_time_in_milliseconds() -> None:
    at = 1_764_590_400_123_456_789  # 2025-12-01T12:00:00.123456789Z
    assert new_id(at).int >> 80 == at // 1_000_000


def test_ids_of_one_process_only_increase() -> None:
    # Many in one millisecond, and a clock that steps back: still strictly increasing.
    at = time.time_ns()
    ids = [new_id(at) for _ in range(10_000)] + [new_id(at - 10**9) for _ in range(100)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert [str(i) for i in ids] == sorted(str(i) for i in ids)
    # They borrow the following milliseconds only as far as they must (2,048+ per ms).
    assert (ids[-1].int >> 80) - at // 1_000_000 <= 10_100 // 2_048 + 1


def test_ids_sort_by_creation_time() -> None:
    start = time.time_ns()
    ids = [new_id(start + k * 1_000_000) for k in range(200)]  # one a millisecond
    assert [i.int >> 80 for i in ids] == [start // 1_000_000 + k for k in range(200)]
