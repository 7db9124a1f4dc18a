"""Task ids are version 7 UUIDs: the creation time first, so they sort by it."""

from __future__ import annotations

import time
import uuid

from shared.ids import new_id


def test_ids_are_version_7_with_the_rfc_variant() -> None:
    ids = [new_id() for _ in range(1000)]
    assert {i.version for i in ids} == {7}
    assert {i.variant for i in ids} == {uuid.RFC_4122}
    assert len(set(ids)) == 1000
    assert all(uuid.UUID(str(i)) == i for i in ids)


def test_an_id_starts_with_its_time_in_milliseconds() -> None:
    at = 1_764_590_400_123_456_789  # 2025-12-01T12:00:00.123456789Z
    assert new_id(at).int >> 80 == 1_764_590_400_123


def test_ids_sort_by_creation_time() -> None:
    start = time.time_ns()
    ids = [new_id(start + k * 1_000_000) for k in range(200)]  # one a millisecond
    assert sorted(ids) == ids
    assert sorted(map(str, ids)) == [str(i) for i in ids]


def test_ids_of_one_millisecond_differ_in_their_74_random_bits() -> None:
    at = time.time_ns()
    ids = {new_id(at) for _ in range(10_000)}
    assert len(ids) == 10_000
    assert {i.int >> 80 for i in ids} == {at // 1_000_000}
