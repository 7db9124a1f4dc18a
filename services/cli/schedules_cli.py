"""``taskstream schedules``: list, show, pause, resume, trigger, delete, and apply a file.

Each calls the same ``shared.schedule_ops`` function as the matching API route; ``--json``
prints the route's body, otherwise text. ``apply FILE`` makes the schedules match the file
(``{"schedules": {"<name>": {<a PUT body>}, …}}``, JSON, or YAML when PyYAML is installed):
creates, replaces, and with ``--prune`` deletes the others; ``--dry-run`` only says what it
would do. It is idempotent and safe when several deployments run it at once. A bad argument or
file is one line on stderr naming the field and exit 2; no such schedule, or an unreachable
store, one line and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import msgspec

from taskstream.services.cli.format import format_time, table
from taskstream.shared import config as config_mod
from taskstream.shared import schedule_ops
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.errors import ConfigError, StoreUnavailable, TaskstreamError
from taskstream.shared.keys import Keys
from taskstream.shared.schedule_models import ApplyResult, ScheduleList, ScheduleView
from taskstream.shared.streams import Streams

_encode = msgspec.json.Encoder().encode
ACTIONS = ("list", "show", "pause", "resume", "trigger", "delete", "apply")


class UsageError(TaskstreamError):
    """A command line that does not parse."""


class NotFound(TaskstreamError):
    """No such schedule."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="taskstream schedules",
        description="Recurring schedules: list, show, pause, resume, trigger, delete, apply.",
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="|".join(ACTIONS))
    _json(sub.add_parser("list", help="every schedule: state, next and last run, counts"))
    for action, text in (
        ("show", "one schedule: spec, next runs, latest runs and their tasks, counts"),
        ("pause", "pause (nothing fires, nothing is counted missed)"),
        ("resume", "resume from the next tick"),
        ("trigger", "run now, whatever the overlap policy and pause"),
        ("delete", "delete the schedule and its runs (its tasks stay)"),
    ):
        p = sub.add_parser(action, help=text)
        p.add_argument("name", metavar="NAME")
        if action in ("pause", "resume"):
            p.add_argument("--note", help="why (shown with the schedule)")
        _json(p)
    apply = sub.add_parser("apply", help="make the schedules match FILE (JSON, or YAML)")
    apply.add_argument("file", type=Path, metavar="FILE")
    apply.add_argument("--prune", action="store_true", help="delete schedules FILE does not name")
    apply.add_argument(
        "--dry-run", action="store_true", help="say what would change; change nothing"
    )
    _json(apply)
    return parser


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON (the API's body)")


def schedules_main(argv: Sequence[str]) -> int:
    """Run one ``taskstream schedules`` command; the process exit code."""
    prog = "taskstream schedules"
    try:
        args = build_parser().parse_args(list(argv))
    except UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    prog = f"{prog} {args.action}"
    try:
        config = config_mod.load()
        return asyncio.run(_run(args, config))
    except (UsageError, ConfigError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except schedule_ops.InvalidSchedule as exc:
        where = f"{exc.field}: " if exc.field else ""
        print(f"{prog}: {where}{exc}", file=sys.stderr)
        return 2
    except (NotFound, StoreUnavailable) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace, config: Config) -> int:
    if args.action == "apply":  # read and validate the file before opening any store
        doc = schedule_ops.load_file(args.file)
        schedule_ops.parse_file(doc, config.tasks)
    db = await Database.connect(config.stores.database_url, min_size=1, max_size=2)
    try:
        return await _act(args, config, db)
    finally:
        await db.close()


async def _act(args: argparse.Namespace, config: Config, db: Database) -> int:
    action = args.action
    if action == "list":
        return _print(args, await schedule_ops.list_all(db), list_text)
    if action == "apply":
        doc = schedule_ops.load_file(args.file)
        result = await schedule_ops.apply(
            db, doc, config.tasks, prune=args.prune, dry_run=args.dry_run
        )
        return _print(args, result, apply_text)
    name = args.name
    if action == "trigger":
        streams = Streams.connect(
            config.stores.redis_url, Keys(config.stores.namespace), max_connections=2
        )
        try:
            publish = schedule_ops.stream_publisher(streams)
            run = await schedule_ops.trigger(db, name, config.tasks, publish)
        finally:
            await streams.close()
        if run is None:
            raise NotFound(f"no schedule {name}")
        text = (
            f"triggered {name}: task {run.task_id}, scheduled for {format_time(run.scheduled_for)}"
        )
        return _print(args, run, lambda _: text)
    if action == "delete":
        if not await schedule_ops.delete(db, name):
            raise NotFound(f"no schedule {name}")
        return _print(args, {"deleted": name}, lambda _: f"deleted {name}")
    if action == "show":
        view = await schedule_ops.get(db, name)
    elif action == "pause":
        view = await schedule_ops.pause(db, name, args.note)
    else:
        view = await schedule_ops.resume(db, name, args.note)
    if view is None:
        raise NotFound(f"no schedule {name}")
    return _print(args, view, show_text if action == "show" else _changed_text(action))


def _print(args: argparse.Namespace, result: Any, render: Any) -> int:
    print(_encode(result).decode() if args.json else render(result))
    return 0


def _spec(v: ScheduleView) -> str:
    return f"cron {v.cron}" if v.cron is not None else f"every {v.every}"


def list_text(result: ScheduleList) -> str:
    if not result.schedules:
        return "no schedules"
    rows = [
        [
            v.name,
            v.state,
            _spec(v),
            v.timezone,
            v.overlap,
            format_time(v.next_runs[0]) if v.next_runs else None,
            format_time(v.last_run.scheduled_for) if v.last_run else None,
            v.last_run.status if v.last_run else None,
            v.counts.enqueued + v.counts.caught_up + v.counts.triggered,
            v.counts.skipped,
            v.counts.missed,
        ]
        for v in result.schedules
    ]
    headers = ["NAME", "STATE", "SCHEDULE", "TIMEZONE", "OVERLAP", "NEXT RUN", "LAST RUN",
               "LAST STATUS", "RUNS", "SKIPPED", "MISSED"]  # fmt: skip
    return table(headers, rows)


def show_text(v: ScheduleView) -> str:
    c = v.counts
    lines = [
        ("schedule", v.name),
        ("state", v.state + (f" since {format_time(v.paused_at)}" if v.paused_at else "")),
        ("spec", f"{_spec(v)} ({v.timezone})"),
        ("task", _task_text(v.task)),
        ("overlap", v.overlap),
        ("catchup", v.catchup),
        ("jitter", v.jitter),
    ]
    if v.start_at or v.end_at:
        lines.append(("window", f"{format_time(v.start_at)} to {format_time(v.end_at)}"))
    if v.note:
        lines.append(("note", v.note))
    if v.buffered_for:
        lines.append(("buffered", f"the run of {format_time(v.buffered_for)} waits"))
    lines.append(
        (
            "counts",
            f"{c.enqueued} enqueued, {c.caught_up} caught up, {c.skipped} skipped, "
            f"{c.missed} missed, {c.triggered} triggered",
        )
    )
    lines.append(("next runs", ", ".join(format_time(t) for t in v.next_runs) or "-"))
    width = max(len(k) for k, _ in lines)
    out = [f"{k.ljust(width)}  {val}" for k, val in lines]
    if v.runs:
        rows = [
            [format_time(r.scheduled_for), r.outcome, str(r.task_id), r.status or "(deleted)"]
            for r in v.runs
        ]
        out += ["", table(["SCHEDULED FOR", "OUTCOME", "TASK", "STATUS"], rows)]
    return "\n".join(out)


def _task_text(task: Any) -> str:
    """The task body without the fields left to their defaults (null)."""
    body = msgspec.json.decode(_encode(task))
    return _encode({k: v for k, v in body.items() if v is not None}).decode()


def _changed_text(action: str) -> Any:
    def render(v: ScheduleView) -> str:
        if v.change == "unchanged":
            return f"{v.name} is already paused" if action == "pause" else f"{v.name} is not paused"
        if action == "pause":
            return f"paused {v.name}" + (f" ({v.note})" if v.note else "")
        nxt = format_time(v.next_runs[0]) if v.next_runs else "none (ended)"
        return f"resumed {v.name}; next run {nxt}"

    return render


def apply_text(r: ApplyResult) -> str:
    head = "dry run: would make " if r.dry_run else ""
    lines = [
        f"{head}{len(r.created)} created, {len(r.updated)} updated, {len(r.unchanged)} "
        f"unchanged, {len(r.deleted)} deleted"
    ]
    for label, names in (("created", r.created), ("updated", r.updated), ("deleted", r.deleted)):
        lines += [f"  {label}  {n}" for n in names]
    return "\n".join(lines)
