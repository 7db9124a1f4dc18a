"""Schedule and queue-pause operations, one typed function each, used by both the ingest API's
routes and the ``taskstream schedules`` / ``taskstream queues pause|resume`` commands, so the
two always agree (the CLI's ``--json`` prints the route's body).

A spec that does not validate raises ``InvalidSchedule`` naming the field (the API answers
422); nothing is written then. ``apply`` validates a whole file before it writes anything,
then makes the schedules match it in one transaction (``Database.apply_schedules``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from taskstream.shared.config import TaskDefaults
from taskstream.shared.db import Database, Run
from taskstream.shared.db.schedules import Decide
from taskstream.shared.domain import NewTask, Ready, schedule
from taskstream.shared.domain.access import DEFAULT_TENANT, valid_tenant
from taskstream.shared.domain.recurrence import format_duration
from taskstream.shared.domain.schedule import NAME_PATTERN, Spec, SpecError, Stored, Write
from taskstream.shared.errors import StoreError, TaskstreamError
from taskstream.shared.models import TaskRequest
from taskstream.shared.schedule_models import (
    ApplyResult,
    PauseList,
    PauseView,
    QueuePauseRequest,
    RunView,
    ScheduleCounts,
    ScheduleList,
    ScheduleRequest,
    ScheduleView,
    TriggerResult,
)
from taskstream.shared.streams import Publish, Streams
from taskstream.shared.submit import SubmitError, describe, integral, new_task

log = logging.getLogger(__name__)

RUNS_SHOWN = 10  # latest runs in a schedule's own view
NEXT_SHOWN = 5  # next runs in a schedule's own view (the list shows one)
_NAME = re.compile(NAME_PATTERN)
# Fields of a task body a schedule's task cannot have, and why.
_TICK_DECIDES = {
    "idempotency_key": "a schedule's runs are unique by their tick; no idempotency_key",
    "run_at": "a schedule's tick (plus its jitter) is the time; no run_at",
    "delay_ms": "a schedule's tick (plus its jitter) is the time; no delay_ms (see jitter)",
}


class InvalidSchedule(TaskstreamError):
    """A schedule (or apply file, or pause request) that does not validate; ``field`` names
    what is wrong."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def check_name(name: str) -> str:
    """A schedule's stored name: its name, after ``<tenant>/`` for a tenant other than the
    default (see ``stored_name``)."""
    tenant, _, own = name.rpartition("/")
    if tenant and not valid_tenant(tenant):
        raise InvalidSchedule("not a tenant's schedule name", "name")
    if not (1 <= len(own) <= 200) or not _NAME.match(own):
        raise InvalidSchedule(
            "a schedule name is 1-200 letters, digits and . _ : - characters", "name"
        )
    return name


def stored_name(tenant: str, name: str) -> str:
    """Schedules are per tenant: another tenant's ``nightly`` is stored as ``acme/nightly``
    (a schedule name holds no ``/``), the default tenant's as it is. The tasks a schedule makes
    belong to its tenant (``FIRE_RUNS`` reads it from the name)."""
    return name if tenant == DEFAULT_TENANT else f"{tenant}/{name}"


def tenant_of(stored: str) -> str:
    tenant, _, _ = stored.rpartition("/")
    return tenant or DEFAULT_TENANT


def shown_name(stored: str) -> str:
    """The name a schedule's own tenant knows it by."""
    return stored.rpartition("/")[2]


def parse_request(obj: Any, prefix: str = "") -> ScheduleRequest:
    """A schedule body (decoded JSON) as a request, or ``InvalidSchedule`` naming the field
    (``prefix`` goes before it)."""
    try:
        return msgspec.convert(obj, ScheduleRequest)
    except msgspec.ValidationError as exc:
        first = exc
    if isinstance(obj, dict) and isinstance(obj.get("task"), dict):
        try:  # perhaps an integer written as 3.0: look again with those made ints
            return msgspec.convert({**obj, "task": integral(dict(obj["task"]))}, ScheduleRequest)
        except msgspec.ValidationError:
            pass
    error = describe(first, prefix)
    for name, why in _TICK_DECIDES.items():
        if error.field == f"{prefix}task.{name}".lstrip("."):
            raise InvalidSchedule(why, error.field)
    raise InvalidSchedule(error.message, error.field)


def define(req: ScheduleRequest, defaults: TaskDefaults, prefix: str = "") -> tuple[Spec, str]:
    """The validated spec and task body (JSON) of a request."""
    try:
        spec = schedule.validate(
            cron=req.cron,
            every=req.every,
            timezone=req.timezone,
            overlap=req.overlap,
            catchup=req.catchup,
            jitter=req.jitter,
            start_at=req.start_at,
            end_at=req.end_at,
        )
    except SpecError as exc:
        raise InvalidSchedule(str(exc), prefix + exc.field) from None
    task_request = task_request_of(req.task)
    try:
        new_task(task_request, defaults)  # what each tick will do: it must work now
    except SubmitError as exc:
        raise InvalidSchedule(str(exc), f"{prefix}task.{exc.field}") from None
    return spec, msgspec.json.encode(req.task).decode()


def task_request_of(task: Any) -> TaskRequest:
    """A schedule's task body as the ``POST /v1/tasks`` body it is."""
    return msgspec.convert(msgspec.to_builtins(task), TaskRequest)


def build_for(stored: Stored, defaults: TaskDefaults) -> NewTask:
    """The task one run of ``stored`` makes (as the watcher builds it)."""
    request = msgspec.json.decode(stored.task, type=TaskRequest)
    return new_task(request, defaults, tenant=tenant_of(stored.name))


def view(
    stored: Stored, runs: list[Run], *, next_n: int, change: str | None = None
) -> ScheduleView:
    spec = stored.spec
    upcoming = schedule.upcoming(spec, stored.next_tick, next_n) if stored.state == "active" else []
    shown = [_run_view(r) for r in runs]
    return ScheduleView(
        name=stored.name,
        state=stored.state,
        cron=spec.cron,
        every=format_duration(spec.every_ms) if spec.every_ms is not None else None,
        timezone=spec.timezone,
        task=msgspec.Raw(stored.task.encode()),
        overlap=spec.overlap,
        catchup=format_duration(spec.catchup_ms),
        jitter=format_duration(spec.jitter_ms),
        start_at=spec.start_at,
        end_at=spec.end_at,
        paused=stored.paused,
        note=stored.note,
        paused_at=stored.paused_at,
        next_runs=upcoming,
        buffered_for=stored.buffered_for,
        last_run=shown[0] if shown else None,
        counts=ScheduleCounts(
            enqueued=stored.enqueued,
            caught_up=stored.caught_up,
            skipped=stored.skipped,
            missed=stored.missed,
            triggered=stored.triggered,
        ),
        created_at=stored.created_at,
        updated_at=stored.updated_at,
        runs=shown if next_n > 1 else [],
        change=change,
    )


def _run_view(r: Run) -> RunView:
    return RunView(
        scheduled_for=r.scheduled_for,
        outcome=r.outcome,
        task_id=r.task_id,
        status=r.status,
        created_at=r.created_at,
    )


async def _full_view(db: Database, stored: Stored, change: str | None = None) -> ScheduleView:
    runs = await db.schedule_runs(stored.name, RUNS_SHOWN)
    return view(stored, runs, next_n=NEXT_SHOWN, change=change)


def _decider(name: str, spec: Spec, task: str, req: ScheduleRequest) -> Decide:
    def decide(existing: Stored | None, now: dt.datetime) -> Write | None:
        return schedule.put(name, existing, spec, task, paused=req.paused, note=req.note, now=now)

    return decide


async def put(
    db: Database,
    name: str,
    req: ScheduleRequest,
    defaults: TaskDefaults,
    *,
    now: dt.datetime | None = None,
) -> ScheduleView:
    """Create or replace a schedule (idempotent: the same body again changes nothing).
    ``now``: Postgres's clock unless given (tests)."""
    check_name(name)
    spec, task = define(req, defaults)
    decide = _decider(name, spec, task, req)
    change, stored = await db.change_schedule(name, decide, create=True, now=now)
    assert stored is not None
    if change != "unchanged":
        log.info("schedule %s %s", name, change, extra={"event": f"schedule.{change}"})
    return await _full_view(db, stored, change)


async def get(db: Database, name: str) -> ScheduleView | None:
    stored = await db.get_schedule(check_name(name))
    return await _full_view(db, stored) if stored is not None else None


async def list_all(db: Database, tenant: str | None = None) -> ScheduleList:
    """Every schedule, or ``tenant``'s only."""
    views = []
    for stored in await db.list_schedules():
        if tenant is not None and tenant_of(stored.name) != tenant:
            continue
        views.append(view(stored, await db.schedule_runs(stored.name, 1), next_n=1))
    return ScheduleList(schedules=views)


async def pause(
    db: Database, name: str, note: str | None = None, *, now: dt.datetime | None = None
) -> ScheduleView | None:
    """Pause a schedule (with a note): nothing fires, nothing is counted missed."""
    change, stored = await db.change_schedule(
        check_name(name), lambda s, at: schedule.pause(s, note, at) if s else None, now=now
    )
    if stored is None:
        return None
    if change == "updated":
        log.info("schedule %s paused", name, extra={"event": "schedule.paused"})
    return await _full_view(db, stored, change)


async def resume(
    db: Database, name: str, note: str | None = None, *, now: dt.datetime | None = None
) -> ScheduleView | None:
    """Resume a paused schedule from its next tick after now (the ticks that passed while
    it was paused are neither run nor counted missed)."""
    change, stored = await db.change_schedule(
        check_name(name), lambda s, at: schedule.resume(s, note, at) if s else None, now=now
    )
    if stored is None:
        return None
    if change == "updated":
        log.info("schedule %s resumed", name, extra={"event": "schedule.resumed"})
    return await _full_view(db, stored, change)


async def delete(db: Database, name: str) -> bool:
    """Delete a schedule and its runs (the tasks it made stay)."""
    gone = await db.delete_schedule(check_name(name))
    if gone:
        log.info("schedule %s deleted", name, extra={"event": "schedule.deleted"})
    return gone


def stream_publisher(streams: Streams) -> Any:
    """Publishes committed tasks; when Redis refuses, says so (False), so their outbox row
    stays and the watcher's repair sends them."""

    async def publish(rows: list[Ready]) -> bool:
        entries = [
            Publish(priority=r.priority, task_id=r.id, attempt=r.attempt, trace_context=None)
            for r in rows
        ]
        try:
            await streams.publish(entries)
        except StoreError as exc:
            log.warning(
                "%d tasks committed, publishing left to the repair: %s",
                len(rows),
                exc,
                extra={"event": "schedule.unpublished"},
            )
            return False
        return True

    return publish


async def trigger(
    db: Database, name: str, defaults: TaskDefaults, publish: Any
) -> TriggerResult | None:
    """Run a schedule now, whatever its overlap policy and pause (its tick is now)."""
    done = await db.trigger_schedule(
        check_name(name), lambda stored: build_for(stored, defaults), publish
    )
    if done is None:
        return None
    _, run = done
    log.info("schedule %s triggered", name, extra={"event": "schedule.triggered"})
    return TriggerResult(
        schedule=name, scheduled_for=run.scheduled_for, task_id=run.task_id, status="queued"
    )


def load_file(path: Path) -> Any:
    """An apply file: JSON, or YAML (``.yaml``, ``.yml``) when PyYAML is installed."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidSchedule(f"cannot read {path}: {exc.strerror}", "file") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise InvalidSchedule(
                "YAML files need PyYAML (pip install pyyaml); or write the file as JSON", "file"
            ) from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidSchedule(f"{path} is not YAML: {exc}", "file") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidSchedule(f"{path} is not JSON: {exc}", "file") from None


def parse_file(doc: Any, defaults: TaskDefaults) -> dict[str, tuple[ScheduleRequest, Spec, str]]:
    """Every schedule of an apply file, validated (the first bad one raises, naming it):
    ``{"schedules": {"<name>": {<a PUT body>}, …}}``."""
    if not isinstance(doc, Mapping) or set(doc) != {"schedules"}:
        raise InvalidSchedule('the file must hold one key, "schedules"', "schedules")
    entries = doc["schedules"]
    if entries is None:
        entries = {}
    if not isinstance(entries, Mapping):
        raise InvalidSchedule('"schedules" maps each schedule name to its spec', "schedules")
    out: dict[str, tuple[ScheduleRequest, Spec, str]] = {}
    for name, body in entries.items():
        where = f"schedules.{name}"
        if not isinstance(name, str):
            raise InvalidSchedule("a schedule name is a string", "schedules")
        try:
            check_name(name)
        except InvalidSchedule as exc:
            raise InvalidSchedule(str(exc), where) from None
        req = parse_request(body, where + ".")
        spec, task = define(req, defaults, where + ".")
        out[name] = (req, spec, task)
    return out


async def apply(
    db: Database, doc: Any, defaults: TaskDefaults, *, prune: bool, dry_run: bool = False
) -> ApplyResult:
    """Make the schedules match ``doc``: create the new, replace the changed, and with
    ``prune`` delete those it does not name. Idempotent, and safe when several run at once
    (one transaction behind an advisory lock). ``dry_run``: say what would change."""
    wanted = parse_file(doc, defaults)
    if dry_run:
        now = await db.now()
        existing = {s.name: s for s in await db.list_schedules()}
        changes = {}
        for name, (req, spec, task) in wanted.items():
            current = existing.get(name)
            if current is None:
                changes[name] = "created"
            elif _decider(name, spec, task, req)(current, now) is None:
                changes[name] = "unchanged"
            else:
                changes[name] = "updated"
        deleted = sorted(n for n in existing if n not in wanted) if prune else []
    else:
        decisions = [(n, _decider(n, spec, task, req)) for n, (req, spec, task) in wanted.items()]
        changes, deleted = await db.apply_schedules(decisions, prune=prune)
    result = ApplyResult(
        created=sorted(n for n, c in changes.items() if c == "created"),
        updated=sorted(n for n, c in changes.items() if c == "updated"),
        unchanged=sorted(n for n, c in changes.items() if c == "unchanged"),
        deleted=deleted,
        dry_run=dry_run,
    )
    if not dry_run and (result.created or result.updated or result.deleted):
        log.info(
            "applied schedules: %d created, %d updated, %d deleted",
            len(result.created),
            len(result.updated),
            len(result.deleted),
            extra={"event": "schedule.applied"},
        )
    return result


def _queue(req: QueuePauseRequest) -> tuple[str, str]:
    if (req.priority is None) == (req.type is None):
        raise InvalidSchedule("give a priority or a type, not both and not neither", "priority")
    return ("priority", req.priority) if req.priority is not None else ("type", str(req.type))


async def pause_queue(db: Database, req: QueuePauseRequest) -> PauseView:
    """Pause a priority or a task type cluster-wide: executors stop starting its tasks
    (within ``PAUSE_POLL_MS``); they wait queued, no attempt used; running ones finish."""
    kind, name = _queue(req)
    p, created = await db.pause_queue(kind, name, req.note)
    if created:
        log.info("paused %s %s", kind, name, extra={"event": "queue.paused", "note": req.note})
    return PauseView(
        kind=p.kind, name=p.name, paused=True, note=p.note, paused_at=p.paused_at, changed=created
    )


async def resume_queue(db: Database, req: QueuePauseRequest) -> PauseView:
    """Resume a paused queue: its waiting tasks start again (parked ones are re-published by
    the watcher)."""
    kind, name = _queue(req)
    changed = await db.resume_queue(kind, name)
    if changed:
        log.info("resumed %s %s", kind, name, extra={"event": "queue.resumed"})
    return PauseView(kind=kind, name=name, paused=False, changed=changed)


async def pauses(db: Database) -> PauseList:
    """Every paused queue (with the tasks parked under each paused type)."""
    return PauseList(
        pauses=[
            PauseView(
                kind=p.kind,
                name=p.name,
                paused=True,
                note=p.note,
                paused_at=p.paused_at,
                parked=p.parked,
            )
            for p in await db.queue_pauses()
        ]
    )
