"""A workflow's shape (no I/O): topological order, unknown dependencies and cycles named."""

from __future__ import annotations

import pytest

from taskstream.shared.domain import workflow as shape


def test_the_order_puts_every_parent_before_its_children() -> None:
    parents = {"d": ["b", "c"], "b": ["a"], "c": ["a"], "a": []}
    order = shape.check(parents)
    assert sorted(order) == ["a", "b", "c", "d"]
    for child, deps in parents.items():
        assert all(order.index(p) < order.index(child) for p in deps)


def test_an_unknown_dependency_names_the_step_and_the_missing_one() -> None:
    with pytest.raises(shape.ShapeError) as caught:
        shape.check({"a": [], "b": ["a", "nope"]})
    assert caught.value.steps == ["b", "nope"] and caught.value.field == "steps[1].depends_on"


@pytest.mark.parametrize(
    ("parents", "cycle"),
    [
        ({"a": ["a"]}, {"a"}),
        ({"x": ["z"], "z": ["x"]}, {"x", "z"}),
        ({"r": [], "a": ["r", "c"], "b": ["a"], "c": ["b"], "tail": ["c"]}, {"a", "b", "c"}),
    ],
)
def test_a_cycle_names_its_steps_only(parents: dict[str, list[str]], cycle: set[str]) -> None:
    with pytest.raises(shape.ShapeError) as caught:
        shape.check(parents)
    assert set(caught.value.steps) == cycle
