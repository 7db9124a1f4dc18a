"""The ``taskstream`` command: one subcommand per service, plus operator and dev commands."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Sequence

from taskstream.shared import config as config_mod
from taskstream.shared.errors import TaskstreamError

SERVICES = ("ingest", "executor", "watcher", "janitor")


def run_service(name: str, argv: Sequence[str]) -> int:
    """Run one service until SIGTERM/SIGINT; the process exit code."""
    module = importlib.import_module(f"taskstream.services.{name}.__main__")
    return int(module.main(argv))


def migrate(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="taskstream migrate", description="Apply pending migrations (safe to run twice)."
    )
    parser.add_argument("--create-db", action="store_true", help="create the database first")
    args = parser.parse_args(list(argv))
    from taskstream.shared import db

    try:
        config = config_mod.load()
        if args.create_db:
            asyncio.run(db.create_database(config.stores.database_url))
        applied = asyncio.run(db.migrate(config.stores.database_url))
        version = asyncio.run(db.schema_version(config.stores.database_url))
    except TaskstreamError as exc:
        print(f"taskstream migrate: {exc}", file=sys.stderr)
        return 1
    print(f"applied {len(applied)} migration(s); schema version {version}")
    for name in applied:
        print(f"  {name}")
    return 0


def show_config(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="taskstream config")
    parser.add_argument("--markdown", action="store_true", help="the README's table")
    args = parser.parse_args(list(argv))
    if args.markdown:
        print(config_mod.markdown_table())
        return 0
    try:
        config = config_mod.load()
    except TaskstreamError as exc:
        print(f"taskstream config: {exc}", file=sys.stderr)
        return 2
    for field in config_mod.FIELDS:
        shown = config_mod.value(config, field)
        if field in config_mod.SECRETS and shown:
            shown = "(set)"
        print(f"{config_mod.env_name(field)}={shown}")
    return 0


USAGE = """usage: taskstream COMMAND [ARGS]

services:
  ingest        the HTTP API (port 8080)
  executor      run handlers (--burst: exit when the streams are empty)
  watcher       move due retries and delayed tasks onto the streams; repair lost entries
  janitor       reclaim stalled entries, dead-letter poison, trim streams

operating:
  migrate       apply database migrations
  config        show the configuration (--markdown: the README table)
  queues        per priority: length, lag, pending, consumers, ages, retries, dead letters,
                paused; queues pause|resume PRIORITY | --type TYPE [--note]
  pending       pending entries with their tasks (--priority, --consumer, --min-idle 30s)
  task show ID  a task's history: attempts, errors, dead letter, pending entry
  consumers     consumers of the executors' group (--remove-dead [--min-idle 1h])
  dlq           dead letters: list | replay | purge (dry run unless --yes)
  schedules     recurring schedules: list | show | pause | resume | trigger | delete NAME,
                apply FILE [--prune] [--dry-run]
  workflow      workflows: show ID (the DAG as a tree, with states) | list [--status] |
                cancel ID

access:
  keys          API keys: create --tenant T --scopes S [--name N] [--expires 30d] | list | revoke ID
  tenants       limits: set T [--rate 200/s] [--burst 400] [--max-in-flight N]
                [--max-payload 256KiB] [--weight W] | list
  limits        concurrency caps: set (--type T | --tenant T) --max-running N | clear | list

agents:
  mcp           an MCP server over the API (stdio; --http HOST:PORT for streamable HTTP)

measuring:
  load          the load generator (the Go scheduler's flags: -n -w -url -pct-* …)

(From a source checkout, `python -m tools up | with-stores | bench` run everything locally,
start the stores for a command, and benchmark: `make run`, `make test`, `make bench`.)
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command in SERVICES:
        return run_service(command, rest)
    if command == "migrate":
        return migrate(rest)
    if command == "config":
        return show_config(rest)
    if command == "load":
        return int(importlib.import_module("taskstream.services.cli.load").load_main(rest))
    if command == "mcp":
        try:
            server = importlib.import_module("taskstream.services.mcp.server")
        except ModuleNotFoundError as exc:
            if exc.name is None or not exc.name.startswith("mcp"):
                raise
            print(
                "taskstream mcp: the MCP SDK is not installed (pip install 'taskstream[mcp]')",
                file=sys.stderr,
            )
            return 2
        return int(server.mcp_main(rest))
    if command in ("keys", "tenants", "limits"):
        module = importlib.import_module("taskstream.services.cli.access_cli")
        return int(module.access_main(command, rest))
    if command == "schedules":
        module = importlib.import_module("taskstream.services.cli.schedules_cli")
        return int(module.schedules_main(rest))
    if command == "workflow":
        module = importlib.import_module("taskstream.services.cli.workflows_cli")
        return int(module.workflow_main(rest))
    if command in ("queues", "pending", "task", "consumers", "dlq"):
        return int(
            importlib.import_module("taskstream.services.cli.ops_cli").ops_main(command, rest)
        )
    print(f"taskstream: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2
