"""The access commands: ``keys create|list|revoke``, ``tenants set|list`` and
``limits set|clear|list`` (concurrency caps).

They talk to Postgres directly (whoever can reach the database is an admin already). A bad
argument is one line on stderr and exit 2; an unreachable store is one line and exit 1. A new
key is printed once: only its hash is stored.
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

from taskstream.services.cli.format import format_time, parse_duration, table
from taskstream.shared import config as config_mod
from taskstream.shared.access_models import KeyCreated, KeyList, LimitList, TenantList
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.domain.access import (
    TenantLimits,
    parse_rate,
    parse_scopes,
    parse_size,
    valid_tenant,
)
from taskstream.shared.errors import ConfigError, StoreUnavailable, TaskstreamError

COMMANDS = ("keys", "tenants", "limits")
NONE = ("none", "off", "unlimited")
_encode = msgspec.json.Encoder().encode


class UsageError(TaskstreamError):
    """A command line that does not parse."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def access_main(command: str, argv: Sequence[str]) -> int:
    prog = f"taskstream {command}"
    try:
        args = build_parser(command).parse_args(list(argv))
    except UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    try:
        config = config_mod.load()
        return asyncio.run(_run(command, args, config))
    except (UsageError, ConfigError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1


def build_parser(command: str) -> argparse.ArgumentParser:
    if command not in COMMANDS:
        raise UsageError(f"unknown command {command!r}")
    parser = _Parser(prog=f"taskstream {command}", description=__doc__)
    if command == "tenants":
        return _tenants_parser(parser)
    if command == "limits":
        return _limits_parser(parser)
    sub = parser.add_subparsers(dest="action", required=True, metavar="create|list|revoke")
    create = sub.add_parser("create", help="a new API key, printed once")
    create.add_argument("--tenant", type=_tenant, required=True)
    create.add_argument("--scopes", type=_scopes, required=True, help="e.g. tasks:write,tasks:read")
    create.add_argument("--name", help="what the key is for")
    create.add_argument("--expires", type=_duration, metavar="DURATION", help="e.g. 30d, 12h")
    _json_flag(create)
    listing = sub.add_parser("list", help="keys, newest first (never the keys themselves)")
    listing.add_argument("--tenant", type=_tenant, help="one tenant's keys")
    listing.add_argument("--revoked", action="store_true", help="revoked keys too")
    _json_flag(listing)
    revoke = sub.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("id", type=_key_id, metavar="ID")
    _json_flag(revoke)
    return parser


def _tenants_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub = parser.add_subparsers(dest="action", required=True, metavar="set|list")
    set_ = sub.add_parser(
        "set", help="set a tenant's limits (only those given change; 'none' clears one)"
    )
    set_.add_argument("name", type=_tenant, metavar="TENANT")
    set_.add_argument("--rate", type=_optional(parse_rate), help="e.g. 200/s, 1200/m")
    set_.add_argument("--burst", type=_optional(_positive), help="tasks at once (default: rate)")
    set_.add_argument("--max-in-flight", type=_optional(_positive),
                      help="scheduled, queued, running and retrying tasks at most")  # fmt: skip
    set_.add_argument("--max-payload", type=_optional(parse_size), help="e.g. 256KiB")
    set_.add_argument("--weight", type=_positive, help="its fair share (default 1)")
    _json_flag(set_)
    listing = sub.add_parser("list", help="tenants with limits")
    _json_flag(listing)
    return parser


def _limits_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub = parser.add_subparsers(dest="action", required=True, metavar="set|clear|list")
    for action, text in (("set", "cap the tasks running at once"), ("clear", "remove a cap")):
        p = sub.add_parser(action, help=text)
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("--type", help="a task type")
        which.add_argument("--tenant", type=_tenant, help="a tenant")
        if action == "set":
            p.add_argument(
                "--max-running",
                type=_positive_arg,
                required=True,
                help="at most this many running at once, across every executor",
            )
        _json_flag(p)
    listing = sub.add_parser("list", help="every cap")
    _json_flag(listing)
    return parser


async def _limits(args: argparse.Namespace, db: Database) -> int:
    if args.action == "list":
        return _print(args, LimitList(limits=await db.concurrency_limits()), _limits_text)
    kind, name = ("type", args.type) if args.type else ("tenant", args.tenant)
    if args.action == "set":
        stored = await db.set_concurrency_limit(kind, name, args.max_running)
        return _print(args, stored, lambda c: _limits_text(LimitList(limits=[c])))
    cleared = await db.clear_concurrency_limit(kind, name)
    if cleared is None:
        print(f"taskstream limits: no cap on {kind} {name}", file=sys.stderr)
        return 1
    return _print(args, cleared, lambda c: f"removed the cap on {c.kind} {c.name}")


def _limits_text(result: LimitList) -> str:
    rows = [(c.kind, c.name, c.max_running) for c in result.limits]
    return table(("KIND", "NAME", "MAX RUNNING"), rows)


async def _run(command: str, args: argparse.Namespace, config: Config) -> int:
    db = await Database.connect(config.stores.database_url, min_size=1, max_size=2)
    try:
        if command == "tenants":
            return await _tenants(args, db)
        if command == "limits":
            return await _limits(args, db)
        return await _keys(args, db)
    finally:
        await db.close()


UNSET = object()


async def _tenants(args: argparse.Namespace, db: Database) -> int:
    if args.action == "list":
        return _print(args, TenantList(tenants=await db.tenants()), _tenants_text)
    current = next(iter(await db.tenants(args.name)), TenantLimits(name=args.name))
    changes = {
        field: value
        for field, value in (
            ("rate_per_s", args.rate),
            ("burst", args.burst),
            ("max_in_flight", args.max_in_flight),
            ("max_payload_bytes", args.max_payload),
            ("weight", args.weight),
        )
        if value is not None
    }
    merged = msgspec.structs.replace(
        current, in_flight=None, **{k: None if v is UNSET else v for k, v in changes.items()}
    )
    stored = await db.set_tenant(merged)
    return _print(args, stored, lambda t: _tenants_text(TenantList(tenants=[t])))


def _tenants_text(result: TenantList) -> str:
    rows = [
        (
            t.name,
            "-" if t.rate_per_s is None else f"{t.rate_per_s:g}/s",
            t.effective_burst if t.rate_per_s is not None else None,
            t.max_in_flight,
            t.in_flight,
            t.max_payload_bytes,
            t.weight,
        )
        for t in result.tenants
    ]
    headers = ("TENANT", "RATE", "BURST", "MAX IN FLIGHT", "IN FLIGHT", "MAX PAYLOAD", "WEIGHT")
    return table(headers, rows)


async def _keys(args: argparse.Namespace, db: Database) -> int:
    if args.action == "create":
        expires = (
            None
            if args.expires is None
            else dt.datetime.now(dt.UTC) + dt.timedelta(milliseconds=args.expires)
        )
        created = await db.create_api_key(
            args.tenant, sorted(args.scopes), name=args.name, expires_at=expires
        )
        assert created is not None
        result = KeyCreated(key=created.key, api_key=created.api_key)
        if args.json:
            print(_encode(result).decode())
        else:
            k = created.api_key
            print(created.key)
            print(
                f"(key {k.id} for tenant {k.tenant}, scopes {','.join(k.scopes)}, expires "
                f"{format_time(k.expires_at)}: shown this once, only its hash is stored)",
                file=sys.stderr,
            )
        return 0
    if args.action == "list":
        keys = await db.list_api_keys(args.tenant, revoked=args.revoked)
        return _print(args, KeyList(keys=keys), _keys_text)
    revoked = await db.revoke_api_key(args.id)
    if revoked is None:
        print(f"taskstream keys: no key {args.id}", file=sys.stderr)
        return 1
    return _print(args, revoked, lambda k: f"revoked {k.id} ({k.prefix}…, tenant {k.tenant})")


def _keys_text(result: KeyList) -> str:
    rows = [
        (
            str(k.id),
            k.tenant,
            k.prefix + "…",
            ",".join(k.scopes),
            k.name,
            format_time(k.created_at),
            format_time(k.last_used_at),
            format_time(k.expires_at),
            format_time(k.revoked_at),
        )
        for k in result.keys
    ]
    headers = ("ID", "TENANT", "KEY", "SCOPES", "NAME", "CREATED", "LAST USED", "EXPIRES",
               "REVOKED")  # fmt: skip
    return table(headers, rows)


def _print(args: argparse.Namespace, result: Any, render: Any) -> int:
    print(_encode(result).decode() if args.json else render(result))
    return 0


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON (the API's body)")


def _tenant(text: str) -> str:
    if not valid_tenant(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a tenant name (lower-case letters, digits, _ . -; 1-63)"
        )
    return text


def _scopes(text: str) -> frozenset[str]:
    try:
        return parse_scopes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _optional(parse: Any) -> Any:
    """An option's parser that also takes ``none`` (clear the limit)."""

    def parsed(text: str) -> Any:
        if text.strip().lower() in NONE:
            return UNSET
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parsed


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{text!r} is not a positive integer")
    return value


def _positive_arg(text: str) -> int:
    try:
        return _positive(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration(text: str) -> int:
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError("the duration must be positive")
    return value


def _key_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a key id") from None
