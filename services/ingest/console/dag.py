"""A workflow's steps laid out as a drawing: each step in the column of its depth (the longest
chain of parents above it), in submission order within a column, and an edge from each parent
to each child. Pure (no I/O): the template draws the result as SVG."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

NODE_W, NODE_H = 170, 44
GAP_X, GAP_Y = 60, 18
PAD = 10


class Node(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    status: str
    task_id: str
    x: int
    y: int


class Edge(msgspec.Struct, frozen=True, kw_only=True):
    parent: str
    child: str
    path: str  # SVG path data, a curve from the parent's right side to the child's left


class Layout(msgspec.Struct, frozen=True, kw_only=True):
    nodes: list[Node]
    edges: list[Edge]
    width: int
    height: int


def layout(steps: Sequence[tuple[str, Sequence[str], str, str]]) -> Layout:
    """``steps``: (name, parents, status, task id), in submission order (parents first, as a
    workflow is validated acyclic)."""
    depth: dict[str, int] = {}
    for name, parents, _, _ in steps:
        depth[name] = 1 + max((depth.get(p, 0) for p in parents), default=-1)
    rows: dict[int, int] = {}
    nodes: dict[str, Node] = {}
    for name, _, status, task_id in steps:
        column = depth[name]
        row = rows.get(column, 0)
        rows[column] = row + 1
        nodes[name] = Node(
            name=name,
            status=status,
            task_id=task_id,
            x=PAD + column * (NODE_W + GAP_X),
            y=PAD + row * (NODE_H + GAP_Y),
        )
    edges = []
    for name, parents, _, _ in steps:
        child = nodes[name]
        for parent_name in parents:
            parent = nodes.get(parent_name)
            if parent is None:
                continue
            x1, y1 = parent.x + NODE_W, parent.y + NODE_H // 2
            x2, y2 = child.x, child.y + NODE_H // 2
            mid = (x1 + x2) // 2
            path = f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"
            edges.append(Edge(parent=parent_name, child=name, path=path))
    columns = max(depth.values(), default=0) + 1
    tallest = max(rows.values(), default=1)
    return Layout(
        nodes=list(nodes.values()),
        edges=edges,
        width=2 * PAD + columns * NODE_W + (columns - 1) * GAP_X,
        height=2 * PAD + tallest * NODE_H + (tallest - 1) * GAP_Y,
    )
