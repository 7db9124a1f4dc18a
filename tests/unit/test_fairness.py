"""Read slots split by weight (smooth weighted round robin), or strictly by priority."""

from __future__ import annotations

import collections
from typing import Any

from taskstream.shared.domain import FairShare

WEIGHTS = {"critical": 8, "high": 4, "default": 2, "low": 1}


def test_slots_follow_the_weights_exactly_over_a_cycle() -> None:
    fair = FairShare(WEIGHTS)
    assert fair.split(15) == {"critical": 8, "high": 4, "default": 2, "low": 1}


def test_one_slot_at_a_time_still_gives_every_priority_its_share() -> None:
    fair = FairShare(WEIGHTS)
    got: collections.Counter[str] = collections.Counter()
    for _ in range(150):
        for priority, n in fair.split(1).items():
            got[priority] += n
    assert got == {"critical": 80, "high": 40, "default": 20, "low": 10}


def test_low_is_never_starved_within_one_cycle() -> None:
    fair = FairShare(WEIGHTS)
    firsts = [max(fair.split(1).items(), key=lambda kv: kv[1])[0] for _ in range(15)]
    assert "low" in firsts


def test_slots_go_only_to_the_priorities_asked_about() -> None:
    fair = FairShare(WEIGHTS)
    got = fair.split(9, among=["high", "low"])
    assert got == {"high": 7, "low": 2} or got == {"high": 8, "low": 1}
    assert sum(got.values()) == 9 and set(got) == {"high", "low"}


def test_strict_mode_asks_the_highest_priority_for_everything() -> None:
    fair = FairShare(WEIGHTS, strict=True)
    assert fair.split(10) == {"critical": 10, "high": 0, "default": 0, "low": 0}
    assert fair.split(10, among=["default", "low"]) == {"default": 10, "low": 0}


def test_a_batch_is_interleaved_by_share_keeping_each_prioritys_order() -> None:
    import uuid

    from taskstream.services.executor.executor import _interleave
    from taskstream.shared.domain import Delivery

    def d(p: str, i: int) -> Delivery:
        return Delivery(priority=p, entry_id=f"{i}-0", task_id=uuid.uuid4(), attempt=1)

    batch: list[Any] = [d("critical", i) for i in range(8)] + [d("low", i) for i in range(2)]
    out = _interleave(batch)
    assert [e.entry_id for e in out if e.priority == "critical"] == [f"{i}-0" for i in range(8)]
    lows = [i for i, e in enumerate(out) if e.priority == "low"]
    assert lows[0] < 4 < lows[1]  # spread through the batch, not both at the end


def test_the_read_ahead_grows_only_while_handlers_are_quick() -> None:
    from taskstream.services.executor.executor import Executor
    from taskstream.shared import config as config_mod
    from taskstream.shared.handlers import Registry
    from taskstream.shared.metrics import noop

    config = config_mod.replace(config_mod.Config(), worker_pool=10, prefetch=5, prefetch_fast=100)
    ex = Executor(config, None, None, Registry(), noop(), consumer="c")  # type: ignore[arg-type]
    assert ex._capacity() == 15  # nothing run yet
    ex.processed, ex._handlers.avg_run_s = 10, 0.0005
    assert ex._capacity() == 110
    ex._handlers.avg_run_s = 0.5
    assert ex._capacity() == 15
