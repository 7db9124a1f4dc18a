"""A workflow's shape: steps named once, dependencies that exist, no cycle. No I/O here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class ShapeError(ValueError):
    """A workflow that is not a DAG of known steps; ``steps`` names the steps at fault."""

    def __init__(self, message: str, steps: Sequence[str], field: str = "steps") -> None:
        super().__init__(message)
        self.message = message
        self.steps = list(steps)
        self.field = field


def check(parents: Mapping[str, Sequence[str]]) -> list[str]:
    """The steps (name → names of its parents, in submission order) in an order where every
    parent comes before its children; raises ``ShapeError`` naming an unknown dependency or
    the steps of a cycle."""
    for i, (name, deps) in enumerate(parents.items()):
        unknown = [d for d in deps if d not in parents]
        if unknown:
            raise ShapeError(
                f"step {name!r} depends on unknown step(s) {', '.join(map(repr, unknown))}",
                [name, *unknown],
                f"steps[{i}].depends_on",
            )
        if name in deps:
            raise ShapeError(f"step {name!r} depends on itself", [name], f"steps[{i}].depends_on")
    left = {name: len(set(deps)) for name, deps in parents.items()}
    children: dict[str, list[str]] = {name: [] for name in parents}
    for name, deps in parents.items():
        for d in set(deps):
            children[d].append(name)
    ready = [name for name, n in left.items() if n == 0]
    order: list[str] = []
    while ready:
        name = ready.pop()
        order.append(name)
        for child in children[name]:
            left[child] -= 1
            if left[child] == 0:
                ready.append(child)
    if len(order) < len(parents):
        cycle = _a_cycle({n: parents[n] for n in parents if left[n] > 0})
        raise ShapeError(
            f"the steps {' → '.join(map(repr, [*cycle, cycle[0]]))} form a cycle", cycle
        )
    return order


def _a_cycle(parents: Mapping[str, Sequence[str]]) -> list[str]:
    """One cycle among steps that are all in or behind one (each has a parent among them)."""
    start = next(iter(parents))
    seen: dict[str, int] = {}
    path: list[str] = []
    node = start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = next(p for p in parents[node] if p in parents)
    return list(reversed(path[seen[node] :]))
