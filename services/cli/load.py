"""``taskstream load``: the load generator, with the Go scheduler's flags, defaults and table.

Submits tasks over HTTP — closed loop (``-w`` submitters, each sending its next request when
the last one is answered) or open loop (``--rate``: requests leave at fixed times whatever the
answers, so slow answers cannot hide latency) — then waits until every accepted task is
terminal and reports figures computed from the task rows. With DATABASE_URL set it polls
Postgres by the ids of this run; otherwise the HTTP API.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import aiohttp
import msgspec

from taskstream.services.cli.load_report import Report, SubmitStats, build_report, render
from taskstream.services.cli.load_track import (
    DbTracker,
    HttpTracker,
    LoadError,
    Progress,
    Tracker,
    wait_all,
)
from taskstream.services.cli.loadhttp import HttpClient, HttpError
from taskstream.shared import config as config_mod
from taskstream.shared.db import Database
from taskstream.shared.domain import PRIORITIES
from taskstream.shared.errors import TaskstreamError

TYPES = ("noop", "flaky", "always_fail", "sleeper")
SEND_ATTEMPTS = 10  # per request, while ingest answers 429 or 503
MAX_ERRORS = 5  # rejection messages kept for the report
T = TypeVar("T")


class LoadOptions(msgspec.Struct, frozen=True, kw_only=True):
    """The flags; the defaults are the Go scheduler's."""

    n: int = 10_000
    w: int = 16
    url: str = "http://127.0.0.1:8080"
    pct_noop: int = 80
    pct_flaky: int = 10
    pct_fail: int = 5
    pct_sleep: int = 5
    sleep_ms: int = 200
    flaky_attempts: int = 2
    pct_critical: int = 5
    pct_high: int = 30
    pct_default: int = 50
    pct_low: int = 15
    batch: int = 0
    rate: float = 0.0
    duration: float = 0.0
    timeout: float = 300.0
    seed: int | None = None
    json: bool = False

    def type_weights(self) -> dict[str, int]:
        weights = (self.pct_noop, self.pct_flaky, self.pct_fail, self.pct_sleep)
        return dict(zip(TYPES, weights, strict=True))

    def priority_weights(self) -> dict[str, int]:
        weights = (self.pct_critical, self.pct_high, self.pct_default, self.pct_low)
        return dict(zip(PRIORITIES, weights, strict=True))

    def total(self) -> int:
        """Tasks this run submits: ``rate * duration`` in a timed open loop, else ``n``."""
        return round(self.rate * self.duration) if self.rate and self.duration else self.n

    def burst(self) -> str:
        if not self.rate:
            return f"{self.total():,}"
        return f"{self.rate:,.0f}/s \u00d7 {self.total() / self.rate:,.0f} s"

    def route(self) -> str:
        return f"/v1/tasks/batch ({self.batch} per request)" if self.batch else "/v1/tasks"


FLAGS: dict[str, str] = {
    "n": "tasks to submit",
    "w": "concurrent submitters (HTTP connections)",
    "url": "ingest base URL",
    "pct-noop": "%% of noop tasks",
    "pct-flaky": "%% of flaky tasks (fail -flaky-attempts times, then succeed)",
    "pct-fail": "%% of always_fail tasks (dead after their attempts)",
    "pct-sleep": "%% of sleeper tasks",
    "sleep-ms": "how long a sleeper task sleeps (ms)",
    "flaky-attempts": "attempts a flaky task fails before it succeeds",
    "pct-critical": "%% of critical tasks",
    "pct-high": "%% of high tasks",
    "pct-default": "%% of default tasks",
    "pct-low": "%% of low tasks",
    "batch": "tasks per POST /v1/tasks/batch request (0: one task per POST /v1/tasks)",
    "rate": "open loop at this many tasks/s (0: closed loop, -w requests at a time)",
    "duration": "with --rate: send for this many seconds (rate * duration tasks; default -n)",
    "timeout": "give up waiting for the tasks to finish after this many seconds (0: never)",
    "seed": "random seed of the type and priority mix",
    "json": "print the report as JSON",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskstream load",
        description="Submit tasks to ingest, wait until all are finished, print the Go "
        "scheduler's table (computed from the task rows).",
        allow_abbrev=False,
    )
    defaults = LoadOptions()
    for flag, help_text in FLAGS.items():
        dest = flag.replace("-", "_")
        default = getattr(defaults, dest)
        names = (f"-{flag}", f"--{flag}")  # the Go spelling and the usual one
        if isinstance(default, bool):
            parser.add_argument(*names, dest=dest, action="store_true", help=help_text)
            continue
        kind = float if isinstance(default, float) else str if isinstance(default, str) else int
        shown = "" if default is None else f" (default {default})"
        metavar = "PCT" if flag.startswith("pct-") else dest.upper()
        parser.add_argument(
            *names, dest=dest, type=kind, default=default, metavar=metavar, help=help_text + shown
        )
    return parser


def parse_args(argv: Sequence[str]) -> LoadOptions:
    """The options of ``argv``; exits with status 2 and a message when they make no sense."""
    parser = build_parser()
    opts = LoadOptions(**vars(parser.parse_args(list(argv))))
    problem = check(opts)
    if problem:
        parser.error(problem)
    return opts


def check(opts: LoadOptions) -> str | None:
    """What is wrong with ``opts``, or None."""
    for name, weights in (("type", opts.type_weights()), ("priority", opts.priority_weights())):
        if any(v < 0 for v in weights.values()) or sum(weights.values()) != 100:
            return f"the {name} percentages must be ≥ 0 and add up to 100, got {weights}"
    if opts.n < 1 or opts.w < 1:
        return "-n and -w must be at least 1"
    if min(opts.batch, opts.sleep_ms, opts.flaky_attempts) < 0:
        return "-batch, -sleep-ms and -flaky-attempts must be ≥ 0"
    if opts.rate < 0 or opts.duration < 0 or opts.timeout < 0:
        return "-rate, -duration and -timeout must be ≥ 0"
    if opts.duration and not opts.rate:
        return "-duration needs -rate"
    if opts.rate and opts.total() < 1:
        return "-rate * -duration is less than one task"
    return None


def make_plan(opts: LoadOptions, rand: random.Random) -> list[tuple[str, str]]:
    """The ``(type, priority)`` of each task to submit, drawn from the configured mix."""
    n = opts.total()
    tw, pw = opts.type_weights(), opts.priority_weights()
    types = rand.choices(list(tw), weights=list(tw.values()), k=n)
    priorities = rand.choices(list(pw), weights=list(pw.values()), k=n)
    return list(zip(types, priorities, strict=True))


def task_body(task_type: str, priority: str, opts: LoadOptions) -> dict[str, Any]:
    """The request for one task; flaky and sleeper tasks carry what their handlers read."""
    payload: dict[str, int] = {}
    if task_type == "flaky":
        payload = {"fail_first_n": opts.flaky_attempts}
    elif task_type == "sleeper":
        payload = {"ms": opts.sleep_ms}
    return {"type": task_type, "priority": priority, "payload": payload}


class _Result(msgspec.Struct):
    id: uuid.UUID | None = None
    error: Any = None


class _Batch(msgspec.Struct):
    results: list[_Result]


_result = msgspec.json.Decoder(_Result).decode
_batch = msgspec.json.Decoder(_Batch).decode
_encode = msgspec.json.encode


class LoadRun:
    """One run: ``submit()``, then (perhaps after starting executors) ``finish()``."""

    def __init__(
        self,
        opts: LoadOptions,
        *,
        db: Database | None = None,
        concurrency: int | None = None,
        progress: Progress | None = None,
        check: Callable[[], None] | None = None,
    ) -> None:
        self.opts = opts
        self._check = check
        self._db = db
        self._concurrency = concurrency
        self._progress = progress or Progress()
        self._url = opts.url.rstrip("/")
        self._bodies = {(t, p): _encode(task_body(t, p, opts)) for t in TYPES for p in PRIORITIES}
        self.stats = SubmitStats(requested=opts.total(), accepted=0)
        self.ids: list[uuid.UUID] = []
        self._session: aiohttp.ClientSession | None = None
        self._client: HttpClient | None = None

    async def __aenter__(self) -> LoadRun:
        try:
            self._client = HttpClient(self._url, self.opts.w, timeout=120)
        except HttpError as exc:
            raise LoadError(str(exc)) from None
        connector = aiohttp.TCPConnector(limit=self.opts.w)
        timeout = aiohttp.ClientTimeout(total=120)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.close()
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use LoadRun as an async context manager"
        return self._session

    async def submit(self) -> SubmitStats:
        """Send every planned task; returns what was accepted (ids in ``self.ids``)."""
        plan = make_plan(self.opts, random.Random(self.opts.seed))
        size = max(1, self.opts.batch)
        chunks = [plan[i : i + size] for i in range(0, len(plan), size)]
        slots: list[list[uuid.UUID]] = [[] for _ in chunks]
        started = time.perf_counter()
        try:
            async with asyncio.TaskGroup() as tg:
                if self.opts.rate:
                    interval = size / self.opts.rate
                    for i, chunk in enumerate(chunks):
                        due = started + i * interval
                        if (ahead := due - time.perf_counter()) > 0:
                            await asyncio.sleep(ahead)
                        tg.create_task(self._send(chunk, slots, i, due))
                else:
                    indexes = iter(range(len(chunks)))  # shared by the submitters
                    for _ in range(min(self.opts.w, len(chunks))):
                        tg.create_task(self._submitter(chunks, slots, indexes))
        except* LoadError as group:
            raise group.exceptions[0] from None
        self.stats.seconds = time.perf_counter() - started
        self.ids = [task_id for slot in slots for task_id in slot]
        self._progress.show(f"submitted {self.stats.accepted:,}", force=True)
        return self.stats

    async def _submitter(
        self, chunks: list[list[tuple[str, str]]], slots: list[list[uuid.UUID]], indexes: Any
    ) -> None:
        for i in indexes:
            await self._send(chunks[i], slots, i, time.perf_counter())

    async def _send(
        self, chunk: list[tuple[str, str]], slots: list[list[uuid.UUID]], i: int, planned: float
    ) -> None:
        # Submissions go through the lean client (see loadhttp): on a shared machine every
        # microsecond it spends is taken from the system being measured.
        assert self._client is not None, "use LoadRun as an async context manager"
        single = not self.opts.batch
        if single:
            path, body = "/v1/tasks", self._bodies[chunk[0]]
        else:
            body = b'{"tasks":[' + b",".join(self._bodies[c] for c in chunk) + b"]}"
            path = "/v1/tasks/batch"
        for attempt in range(SEND_ATTEMPTS):
            try:
                status, headers, raw = await self._client.post(path, body)
            except HttpError as exc:
                raise LoadError(f"cannot submit to {self._url}{path}: {exc}") from exc
            retry_after = headers.get("retry-after", "")
            if status not in (429, 503) or attempt == SEND_ATTEMPTS - 1:
                break
            await asyncio.sleep(min(1.0, float(retry_after)) if retry_after.isdigit() else 0.2)
        self.stats.latencies.append(time.perf_counter() - planned)
        ids, errors = _accepted(status, raw, single)
        slots[i] = ids
        self.stats.accepted += len(ids)
        self.stats.rejected += len(chunk) - len(ids)
        self.stats.errors += errors[: MAX_ERRORS - len(self.stats.errors)]
        self._progress.show(f"submitted {self.stats.accepted:,}/{self.stats.requested:,}")

    async def finish(self) -> Report:
        """Wait until every accepted task is terminal (or the timeout), then report."""
        tracker: Tracker = HttpTracker(self.session, self.opts.url, self.opts.w)
        if self._db is not None:
            tracker = DbTracker(self._db)
            if self.ids and not await tracker.timings(self.ids[:1]):
                print(
                    "taskstream load: DATABASE_URL does not hold the submitted tasks; "
                    "polling over HTTP",
                    file=sys.stderr,
                )
                tracker = HttpTracker(self.session, self.opts.url, self.opts.w)
        await wait_all(
            self.ids,
            tracker,
            timeout=self.opts.timeout,
            progress=self._progress,
            check=self._check,
        )
        self._progress.close()
        return build_report(
            burst=self.opts.burst(),
            route=self.opts.route(),
            submit=self.stats,
            timings=await tracker.timings(self.ids),
            concurrency=self._concurrency,
        )


def _accepted(status: int, raw: bytes, single: bool) -> tuple[list[uuid.UUID], list[str]]:
    """The ids a response accepted and the errors it gave."""
    try:
        if single and status in (200, 201):
            reply = _result(raw)
            if reply.id is not None:
                return [reply.id], []
        elif not single and status == 200:
            results = _batch(raw).results
            ids = [r.id for r in results if r.id is not None]
            errors = [_encode(r.error).decode() for r in results if r.id is None]
            return ids, errors
    except msgspec.DecodeError:
        pass
    return [], [f"HTTP {status}: {raw[:300].decode(errors='replace')}"]


async def run_load(
    opts: LoadOptions,
    *,
    db: Database | None = None,
    concurrency: int | None = None,
    progress: Progress | None = None,
    check: Callable[[], None] | None = None,
) -> Report:
    """Submit, wait and report (the whole of ``taskstream load``, for programs and tests)."""
    async with LoadRun(opts, db=db, concurrency=concurrency, progress=progress, check=check) as run:
        await run.submit()
        return await run.finish()


def run_async(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine function on uvloop when installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a core dependency on Linux
        return asyncio.run(main())
    return uvloop.run(main())


def load_main(argv: Sequence[str]) -> int:
    opts = parse_args(argv)
    database_url = os.environ.get("DATABASE_URL", "")
    try:
        concurrency: int | None = config_mod.load().executor.worker_pool
    except TaskstreamError:
        concurrency = None

    async def main() -> int:
        db: Database | None = None
        if database_url:
            try:
                db = await Database.connect(database_url, min_size=1, max_size=2)
            except TaskstreamError as exc:
                print(f"taskstream load: {exc}; polling over HTTP", file=sys.stderr)
        try:
            report = await run_load(opts, db=db, concurrency=concurrency)
        except LoadError as exc:
            print(f"taskstream load: {exc}", file=sys.stderr)
            return 1
        finally:
            if db is not None:
                await db.close()
        if opts.json:
            print(msgspec.json.format(msgspec.json.encode(report), indent=2).decode())
        else:
            print(render(report))
        return 0 if report.accepted and not report.unfinished else 1

    try:
        return run_async(main)
    except KeyboardInterrupt:
        return 130
