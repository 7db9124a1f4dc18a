"""``taskstream workflow``: show one workflow as a tree of its steps with their states, list
workflows by state, cancel one.

``show ID`` draws the DAG from its roots: each step under each of its parents, a step already
drawn (a join) named again with ``(see above)``; ``--json`` prints the API's body. No such
workflow, or an unreachable store: one line on stderr and exit 1; a bad argument, exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Sequence
from typing import NoReturn

import msgspec

from taskstream.services.cli.format import format_time, table
from taskstream.shared import config as config_mod
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.errors import ConfigError, StoreUnavailable, TaskstreamError
from taskstream.shared.workflow_models import WORKFLOW_STATES, StepView, WorkflowView

_encode = msgspec.json.Encoder().encode
ACTIONS = ("show", "list", "cancel")


class UsageError(TaskstreamError):
    """A command line that does not parse."""


class NotFound(TaskstreamError):
    """No such workflow."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="taskstream workflow", description="Workflows: show, list, cancel.")
    sub = parser.add_subparsers(dest="action", required=True, metavar="|".join(ACTIONS))
    show = sub.add_parser("show", help="one workflow: its steps as a tree, with their states")
    show.add_argument("id", type=_uuid, metavar="ID")
    listing = sub.add_parser("list", help="workflows, newest first")
    listing.add_argument("--status", choices=WORKFLOW_STATES)
    listing.add_argument("--limit", type=int, default=50)
    cancel = sub.add_parser("cancel", help="cancel every step not yet started")
    cancel.add_argument("id", type=_uuid, metavar="ID")
    for p in (show, listing, cancel):
        p.add_argument("--json", action="store_true", help="print JSON (the API's body)")
    return parser


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a workflow id: {text!r}") from None


def workflow_main(argv: Sequence[str]) -> int:
    """Run one ``taskstream workflow`` command; the process exit code."""
    prog = "taskstream workflow"
    try:
        args = build_parser().parse_args(list(argv))
    except UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    try:
        config = config_mod.load()
        return asyncio.run(_run(args, config))
    except ConfigError as exc:
        print(f"{prog} {args.action}: {exc}", file=sys.stderr)
        return 2
    except (NotFound, StoreUnavailable) as exc:
        print(f"{prog} {args.action}: {exc}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace, config: Config) -> int:
    db = await Database.connect(config.stores.database_url, min_size=1, max_size=2)
    try:
        if args.action == "list":
            views = await db.list_workflows(state=args.status, after=None, limit=args.limit)
            if args.json:
                print(_encode({"workflows": views}).decode())
            else:
                print(list_text(views))
            return 0
        if args.action == "cancel" and await db.cancel_workflow(args.id) is None:
            raise NotFound(f"no workflow {args.id}")
        view = await db.get_workflow(args.id)
    finally:
        await db.close()
    if view is None:
        raise NotFound(f"no workflow {args.id}")
    print(_encode(view).decode() if args.json else show_text(view))
    return 0


def list_text(views: Sequence[WorkflowView]) -> str:
    rows = [
        (str(v.id), v.name, v.state, v.steps_total, v.steps_left, format_time(v.created_at),
         format_time(v.finished_at))
        for v in views
    ]  # fmt: skip
    return table(("ID", "NAME", "STATE", "STEPS", "LEFT", "CREATED", "FINISHED"), rows)


def _label(step: StepView) -> str:
    t = step.task
    parts = [step.name, t.status]
    if t.started_at is not None and t.finished_at is not None:
        parts.append(f"{(t.finished_at - t.started_at).total_seconds():.3f}s")
    if step.cancel_reason:
        parts.append(f"({step.cancel_reason})")
    elif t.status == "dead" and t.last_error is not None:
        parts.append(f"({t.last_error.type}: {t.last_error.message})")
    if step.on_parent_failure == "run":
        parts.append("[runs after a failed parent]")
    return "  ".join(parts)


def show_text(view: WorkflowView) -> str:
    """The workflow's head line, then its DAG as a tree from its roots."""
    steps = view.steps or []
    name = f" {view.name!r}" if view.name else ""
    lines = [
        f"workflow {view.id}{name}  {view.state}  {view.steps_total} steps, "
        f"{view.steps_left} left  created {format_time(view.created_at)}"
        + (f"  finished {format_time(view.finished_at)}" if view.finished_at else "")
    ]
    by_name = {s.name: s for s in steps}
    children: dict[str, list[str]] = {s.name: [] for s in steps}
    for s in steps:
        for p in s.depends_on:
            children[p].append(s.name)
    drawn: set[str] = set()

    def draw(name: str, prefix: str, last: bool, root: bool) -> None:
        branch = "" if root else ("└── " if last else "├── ")
        if name in drawn:
            lines.append(f"{prefix}{branch}{name}  (see above)")
            return
        drawn.add(name)
        lines.append(f"{prefix}{branch}{_label(by_name[name])}")
        below = prefix if root else prefix + ("    " if last else "│   ")
        kids = children[name]
        for i, kid in enumerate(kids):
            draw(kid, below, i == len(kids) - 1, False)

    for s in steps:
        if not s.depends_on:
            draw(s.name, "", True, True)
    return "\n".join(lines)
