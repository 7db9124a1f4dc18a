"""Workflows from Python: the DAG sugar (``step``, ``chain``, ``group`` … ``.then``), the
``Workflow`` view, and the flows of ``submit_workflow``, ``get_workflow``, ``wait_workflow``
and ``cancel_workflow`` (sans I/O, driven by ``Client`` and ``AsyncClient`` like the others).

    from taskstream import chain, group, step

    dag = chain(
        step("fetch", "http.get", {"url": "https://example.com"}),
        group(step("words", "text.count"), step("links", "html.links")),
        step("report", "report.build"),
    )  # the same as step(...).then(group(...)).then(step(...))
    wf = client.submit_workflow(dag, name="crawl")
    done = client.wait_workflow(wf.id, timeout=60)
    done.results["report"]
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from taskstream.shared.client.errors import ValidationError
from taskstream.shared.client.flows import (
    POLL_MAX_S,
    POLL_MIN_S,
    Call,
    Flow,
    Settings,
    Sleep,
    _decode,
    new_idempotency_key,
    request,
    task_id,
)
from taskstream.shared.client.models import OPTION_NAMES, Task
from taskstream.shared.errors import TaskstreamError

_encode = msgspec.json.Encoder().encode


class WorkflowStep(msgspec.Struct, frozen=True, kw_only=True):
    """One step of a workflow as the API shows it: its name, parents, policy and task."""

    name: str
    depends_on: list[str]
    on_parent_failure: str = "cancel"
    cancel_reason: str | None = None
    task: Task


class Workflow(msgspec.Struct, frozen=True, kw_only=True):
    """A workflow as ``GET /v1/workflows/{id}`` shows it. ``state`` is running until every
    step has ended, then succeeded, failed (a step ended dead, or cancelled after a failed
    parent) or cancelled."""

    id: uuid.UUID
    state: str
    name: str | None = None
    steps_total: int = 0
    steps_left: int = 0
    created_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    cancelled_at: dt.datetime | None = None
    idempotency_key: str | None = None
    steps: list[WorkflowStep] | None = None

    @property
    def done(self) -> bool:
        return self.state != "running"

    @property
    def results(self) -> dict[str, Any]:
        """Step name → what its handler returned (None until it succeeded)."""
        return {s.name: s.task.result for s in self.steps or []}

    def step(self, name: str) -> WorkflowStep:
        for s in self.steps or []:
            if s.name == name:
                return s
        raise KeyError(name)


class WorkflowTimeout(TaskstreamError, TimeoutError):
    """``wait_workflow`` ran out of time; ``workflow`` is its last state seen."""

    def __init__(self, workflow: Workflow, timeout: float) -> None:
        self.workflow = workflow
        super().__init__(f"workflow {workflow.id} is still {workflow.state} after {timeout:g} s")


class Dag:
    """Steps and how they connect: ``heads`` (the steps with no parent inside it) and
    ``tails`` (those with no child inside it). Built with ``step``, ``chain``, ``group`` and
    ``then``; ``steps()`` is the body's list."""

    def __init__(self, steps: list[dict[str, Any]], heads: list[str], tails: list[str]) -> None:
        self._steps = steps
        self.heads = heads
        self.tails = tails

    def then(self, *parts: Dag) -> Dag:
        """This, then ``parts`` (run side by side) after every one of its tails."""
        return chain(self, group(*parts) if len(parts) != 1 else parts[0])

    def steps(self) -> list[dict[str, Any]]:
        return [dict(s, depends_on=list(s["depends_on"])) for s in self._steps]


def step(
    name: str,
    type: str,
    payload: Any = None,
    *,
    depends_on: Iterable[str] = (),
    on_parent_failure: str = "cancel",
    **options: Any,
) -> Dag:
    """One step (a task body with a name): options as ``Client.submit`` takes them (but no
    ``idempotency_key``: give the workflow one); ``on_parent_failure="run"`` runs it even after
    a parent failed (``ctx.parent_errors`` tells it which)."""
    unknown = sorted(set(options) - OPTION_NAMES)
    if unknown:
        raise ValidationError(f"unknown option {unknown[0]!r}", code="invalid", field=unknown[0])
    body: dict[str, Any] = {"name": name, "type": type,
                            "payload": {} if payload is None else payload}  # fmt: skip
    body.update((k, v) for k, v in options.items() if v is not None)
    body["depends_on"] = list(depends_on)
    if on_parent_failure != "cancel":
        body["on_parent_failure"] = on_parent_failure
    return Dag([body], [name], [name])


def group(*parts: Dag) -> Dag:
    """``parts`` side by side (no dependency between them)."""
    steps = [s for p in parts for s in p.steps()]
    return Dag(steps, [h for p in parts for h in p.heads], [t for p in parts for t in p.tails])


def chain(*parts: Dag) -> Dag:
    """``parts`` one after the other: each one's heads depend on all of the previous tails."""
    if not parts:
        raise ValueError("chain needs at least one part")
    steps: list[dict[str, Any]] = []
    tails: list[str] = []
    for part in parts:
        heads = set(part.heads)
        for s in part.steps():
            if s["name"] in heads:
                s["depends_on"] = list(dict.fromkeys([*s["depends_on"], *tails]))
            steps.append(s)
        tails = list(part.tails)
    return Dag(steps, list(parts[0].heads), tails)


_workflow = msgspec.json.Decoder(Workflow)


def workflow_body(
    steps: Dag | Iterable[Mapping[str, Any]], name: str | None, idempotency_key: str | None
) -> bytes:
    """The JSON of ``POST /v1/workflows``, with an idempotency key (so a retry of a request
    whose answer was lost makes no second workflow)."""
    items = steps.steps() if isinstance(steps, Dag) else [dict(s) for s in steps]
    key = idempotency_key or new_idempotency_key()
    body: dict[str, Any] = {"steps": items, "idempotency_key": key}
    if name is not None:
        body["name"] = name
    try:
        return _encode(body)
    except (TypeError, ValueError) as exc:
        raise ValidationError(str(exc), code="invalid", field="steps") from None


def submit_workflow(
    s: Settings,
    steps: Dag | Iterable[Mapping[str, Any]],
    name: str | None,
    idempotency_key: str | None,
) -> Flow[Workflow]:
    body = workflow_body(steps, name, idempotency_key)
    answer = yield from request(
        s, Call(method="POST", path="/v1/workflows", body=body), idempotent=True
    )
    return _decode(_workflow, answer)


def get_workflow(s: Settings, workflow: str | uuid.UUID) -> Flow[Workflow]:
    call = Call(method="GET", path=f"/v1/workflows/{task_id(workflow)}")
    answer = yield from request(s, call, idempotent=True)
    return _decode(_workflow, answer)


def wait_workflow(s: Settings, workflow: str | uuid.UUID, timeout: float | None) -> Flow[Workflow]:
    """The workflow once it has ended (whatever its state: look at ``state``), polled 50 ms
    apart at first, growing to 1 s; ``WorkflowTimeout`` after ``timeout`` s (None: no limit)."""
    deadline = None if timeout is None else s.clock() + timeout
    poll = POLL_MIN_S
    while True:
        current = yield from get_workflow(s, workflow)
        if current.done:
            return current
        if deadline is not None and s.clock() >= deadline:
            raise WorkflowTimeout(current, timeout or 0.0)
        left = poll if deadline is None else max(0.0, min(poll, deadline - s.clock()))
        yield Sleep(left)
        poll = min(poll * 2, POLL_MAX_S)


def cancel_workflow(s: Settings, workflow: str | uuid.UUID) -> Flow[Workflow]:
    """Cancel every step not yet started; the workflow as it then stands."""
    call = Call(method="POST", path=f"/v1/workflows/{task_id(workflow)}/cancel")
    yield from request(s, call, idempotent=True)
    return (yield from get_workflow(s, workflow))
