"""The operator commands: ``queues`` (and ``queues pause|resume``), ``pending``, ``task show``,
``consumers``, ``dlq``.

Each calls the same ``shared.ops`` function as the matching API route; ``--json`` prints the
route's body, otherwise an aligned table. Configuration comes from the environment. A bad
argument is one line on stderr and exit 2; an unreachable store is one line and exit 1.
``dlq replay`` and ``dlq purge`` show a dry run and change nothing unless given ``--yes``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import uuid
from collections.abc import Sequence
from typing import Any, NoReturn

import msgspec

from taskstream.services.cli import ops_text
from taskstream.services.cli.format import parse_duration
from taskstream.shared import config as config_mod
from taskstream.shared import ops, schedule_ops
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.domain import PRIORITIES
from taskstream.shared.errors import ConfigError, StoreUnavailable, TaskstreamError
from taskstream.shared.keys import Keys
from taskstream.shared.ops_models import (
    DlqFilter,
    DlqSelection,
)
from taskstream.shared.schedule_models import QueuePauseRequest
from taskstream.shared.streams import Streams

COMMANDS = ("queues", "pending", "task", "consumers", "dlq")
_encode = msgspec.json.Encoder().encode


class UsageError(TaskstreamError):
    """A command line that does not parse."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def ops_main(command: str, argv: Sequence[str]) -> int:
    """Run one operator command; the process exit code."""
    prog = f"taskstream {command}"
    try:
        args = parse(command, argv)
    except (UsageError, ops.BadRequest) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    try:
        config = config_mod.load()
        return asyncio.run(_run(command, args, config))
    except (UsageError, ops.BadRequest, ConfigError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1


def parse(command: str, argv: Sequence[str]) -> argparse.Namespace:
    """The parsed command line, checked as far as it can be without the stores (raises
    ``UsageError`` or ``ops.BadRequest``). ``dlq`` commands get ``where`` (the filter) and,
    for replay and purge, ``selection``."""
    args = build_parser(command).parse_args(list(argv))
    if command == "queues" and getattr(args, "action", None):
        args.pause = _pause_request(args)
        return args
    if command != "dlq":
        return args
    args.where = DlqFilter(
        priority=args.priority,
        type=args.type,
        reason=args.reason,
        error=args.error,
        since=args.since,
        until=args.until,
    )
    if args.action == "list":
        if args.cursor:
            ops.decode_cursor(args.cursor)
        return args
    given = [args.ids is not None, not args.where.is_empty(), args.all]
    if sum(given) != 1:
        raise UsageError(
            "give exactly one of --id ID..., filters (--type, --priority, --reason, --error, "
            "--since, --until) or --all"
        )
    args.selection = DlqSelection(
        ids=args.ids, filter=None if args.where.is_empty() else args.where, all=args.all
    )
    return args


def build_parser(command: str) -> argparse.ArgumentParser:
    if command not in COMMANDS:
        raise UsageError(f"unknown command {command!r}")
    parser = _Parser(prog=f"taskstream {command}", description=_DESCRIPTIONS[command])
    if command == "queues":
        _json_flag(parser)
        sub = parser.add_subparsers(dest="action", metavar="[pause|resume]")
        for action, text in (
            ("pause", "pause a priority or a task type cluster-wide: its tasks wait, unfailed"),
            ("resume", "resume a paused priority or task type"),
        ):
            p = sub.add_parser(action, help=text)
            p.add_argument("priority", nargs="?", choices=PRIORITIES, metavar="PRIORITY")
            p.add_argument("--type", dest="task_type", metavar="TYPE", help="a task type")
            if action == "pause":
                p.add_argument("--note", help="why (shown in taskstream queues)")
            _json_flag(p)
    elif command == "pending":
        parser.add_argument("--priority", choices=PRIORITIES, help="one stream (default: all)")
        parser.add_argument("--consumer", help="only this consumer's entries")
        parser.add_argument(
            "--min-idle", type=_duration, default=0, metavar="DURATION", help="e.g. 30s, 5m"
        )
        parser.add_argument("--limit", type=_positive, default=50, help="at most (default 50)")
        _json_flag(parser)
    elif command == "task":
        sub = parser.add_subparsers(dest="action", required=True, metavar="show")
        show = sub.add_parser("show", help="a task, its attempts, dead letter, pending entry")
        show.add_argument("id", type=_task_id, metavar="ID")
        _json_flag(show)
    elif command == "consumers":
        parser.add_argument(
            "--remove-dead",
            action="store_true",
            help="remove consumers idle --min-idle or more with nothing pending",
        )
        parser.add_argument(
            "--min-idle", type=_duration, default=3_600_000, metavar="DURATION", help="default 1h"
        )
        _json_flag(parser)
    else:
        sub = parser.add_subparsers(dest="action", required=True, metavar="list|replay|purge")
        listing = sub.add_parser("list", help="dead letters, newest first")
        _filters(listing)
        listing.add_argument("--limit", type=_positive, default=50, help="page size (default 50)")
        listing.add_argument("--cursor", help="the next page (printed after a full page)")
        _json_flag(listing)
        for action in ("replay", "purge"):
            p = sub.add_parser(action, help=f"{action} dead letters (a dry run without --yes)")
            p.add_argument(
                "--id", dest="ids", type=_task_id, action="append", metavar="ID", help="repeatable"
            )
            _filters(p)
            p.add_argument("--all", action="store_true", help="every dead letter")
            p.add_argument("--yes", action="store_true", help="do it (default: dry run)")
            _json_flag(p)
    return parser


async def _run(command: str, args: argparse.Namespace, config: Config) -> int:
    streams = Streams.connect(
        config.stores.redis_url, Keys(config.stores.namespace), max_connections=4
    )
    db: Database | None = None
    try:
        if command != "consumers":
            db = await Database.connect(config.stores.database_url, min_size=1, max_size=2)
        if command == "queues":
            assert db is not None
            if args.action == "pause":
                paused = await schedule_ops.pause_queue(db, args.pause)
                return _print(args, paused, ops_text.pause_text)
            if args.action == "resume":
                resumed = await schedule_ops.resume_queue(db, args.pause)
                return _print(args, resumed, ops_text.pause_text)
            return _print(args, await ops.queues(db, streams), ops_text.queues_text)
        if command == "pending":
            assert db is not None
            result = await ops.pending(
                db,
                streams,
                priority=args.priority,
                consumer=args.consumer,
                min_idle_ms=args.min_idle,
                limit=args.limit,
            )
            return _print(args, result, ops_text.pending_text)
        if command == "task":
            assert db is not None
            history = await ops.task_history(db, streams, args.id)
            if history is None:
                print(f"taskstream task: no task {args.id}", file=sys.stderr)
                return 1
            return _print(args, history, ops_text.history_text)
        if command == "consumers":
            if args.remove_dead:
                removed = await ops.remove_dead_consumers(streams, args.min_idle)
                return _print(args, removed, ops_text.removed_text)
            return _print(args, await ops.consumers(streams), ops_text.consumers_text)
        assert db is not None
        return await _dlq(args, db, streams)
    finally:
        await streams.close()
        if db is not None:
            await db.close()


async def _dlq(args: argparse.Namespace, db: Database, streams: Streams) -> int:
    if args.action == "list":
        page = await ops.dlq_list(db, args.where, cursor=args.cursor, limit=args.limit)
        return _print(args, page, ops_text.dlq_text)
    if args.action == "replay":
        result = await ops.dlq_replay(db, streams, args.selection, dry_run=not args.yes)
    else:
        result = await ops.dlq_purge(db, args.selection, dry_run=not args.yes)
    return _print(args, result, ops_text.dlq_result_text)


def _print(args: argparse.Namespace, result: Any, render: Any) -> int:
    print(_encode(result).decode() if args.json else render(result))
    return 0


def _pause_request(args: argparse.Namespace) -> QueuePauseRequest:
    if (args.priority is None) == (args.task_type is None):
        raise UsageError("give a PRIORITY or --type TYPE (one of them)")
    body = {"priority": args.priority, "type": args.task_type, "note": getattr(args, "note", None)}
    try:
        return msgspec.convert(body, QueuePauseRequest)
    except msgspec.ValidationError as exc:
        raise UsageError(str(exc).replace("`$.", "`")) from None


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON (the API's body)")


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--priority", choices=PRIORITIES)
    parser.add_argument("--type", help="task type")
    parser.add_argument("--reason", help="attempts_exhausted, non_retryable, unknown_type, …")
    parser.add_argument("--error", help="substring of the error's type or message (any case)")
    parser.add_argument(
        "--since", type=_when, help="died at or after: ISO time with a zone, or a duration ago (1h)"
    )
    parser.add_argument("--until", type=_when, help="died before: as --since")


def _duration(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _task_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a task id") from None


def _when(text: str) -> dt.datetime:
    """An ISO 8601 time with a zone, or a duration meaning that long ago."""
    try:
        return dt.datetime.now(dt.UTC) - dt.timedelta(milliseconds=parse_duration(text))
    except ValueError:
        pass
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO time with a zone (2030-01-01T00:00:00Z) nor a duration"
        )
    return value


_DESCRIPTIONS = {
    "queues": "Per priority: stream length, lag, pending, consumers, oldest pending and "
    "undelivered ages; retries and delayed tasks waiting; dead letters; whether it is paused. "
    "`queues pause high` or `queues pause --type T` pauses a queue cluster-wide (its tasks "
    "wait queued, no attempt used; running ones finish); `queues resume …` releases it.",
    "pending": "Pending (delivered, unacknowledged) entries, oldest first, with their tasks.",
    "task": "One task's history.",
    "consumers": "Consumers of the executors' group; --remove-dead removes idle ones with "
    "nothing pending (never one holding entries).",
    "dlq": "Dead letters: list, replay (fresh attempts, history kept) or purge (the records "
    "go; the tasks stay dead with their history). replay and purge are dry runs without --yes.",
}
