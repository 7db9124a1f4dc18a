"""``taskstream bench`` (``make bench``): the standard scenarios, beside the raw ceilings.

Brings the system up as ``taskstream up`` does, on a fresh database (``taskstream_bench``,
dropped and created each run) and a fresh Redis namespace, measures the ceilings, runs the
scenarios with the load generator, and prints one table: the machine, the ceilings, and each
scenario with its target and its ratio to the relevant ceiling. Everything it started is
stopped at the end, and on Ctrl-C. The services log to stderr at WARNING (``BENCH_LOG_LEVEL``
to change); configuration knobs (``WORKER_POOL``, ``PREFETCH``…) pass through from the
environment.

Order: the raw ceilings (plain clients, a minimal table), the same loop through taskstream's
code (then the database is made fresh again) → the peers (``--peers``) → ingest and the
movers → C (load 100k, then start the executors and time the drain) → A (with the WAL and the
Postgres CPU it cost) → B → D → E (fair shares between tenants, ``bench_fair.py``: the
services restarted with API keys and ``FAIR_SHARE_ENTRIES``) → memory.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib
import os
import signal
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
import msgspec

from taskstream.services.cli.load import LoadOptions, LoadRun, run_async, run_load
from taskstream.services.cli.load_report import Report, fmt_ms, markdown
from taskstream.services.cli.load_track import LoadError
from taskstream.shared import config as config_mod
from taskstream.shared import db as db_mod
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.domain import retry_delay_ms
from taskstream.shared.errors import TaskstreamError
from taskstream.shared.keys import Keys
from taskstream.shared.streams import Streams
from tools import bench_ceilings, bench_fair, bench_pg, bench_raw
from tools.bench_system import BenchError, Cluster, Machine, free_port, machine, wait_ready
from tools.stores import StoreError, ensure

BENCH_DB = "taskstream_bench"
SCENARIOS = ("A", "B", "C", "D", "E")
A_TARGET, C_TARGET, A_SHARE, PEER_MULTIPLE = 20_000, 22_000, 0.70, 5.0
B_P50_MS, B_P99_MS, D_SLACK_S = 2.0, 10.0, 3.0


class Row(msgspec.Struct, kw_only=True):
    """One line of the table (and of ``--json``)."""

    measure: str
    result: str
    target: str = ""
    vs_ceiling: str = ""
    met: bool | None = None
    value: float | None = None


class Result(msgspec.Struct, kw_only=True):
    started: str
    quick: bool
    machine: Machine | None = None
    executors: int = 0
    worker_pool: int = 0
    raw: bench_raw.RawCeilings | None = None
    ceilings: bench_ceilings.Ceilings | None = None
    peers: dict[str, float] = msgspec.field(default_factory=dict)  # tasks/s, enqueue + drain
    postgres_a: bench_pg.Usage | None = None  # WAL and server CPU during A
    rows: list[Row] = msgspec.field(default_factory=list)
    reports: dict[str, Report] = msgspec.field(default_factory=dict)
    memory_mib: dict[str, dict[str, float]] = msgspec.field(default_factory=dict)
    error: str | None = None  # why the run stopped early; the rows hold what was measured


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="taskstream bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="scenarios ~10x smaller (smoke run)")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios, e.g. A,C")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--executors", type=int, default=2, help="executor processes")
    parser.add_argument(
        "--peers",
        action="store_true",
        help="also measure taskiq and dramatiq (installed into tools/.peers-venv on first use)",
    )
    parser.add_argument("--memory-1m", action="store_true", help="also push 1M tasks, then RSS")
    parser.add_argument("--state-dir", type=Path, default=Path(".local"))
    args = parser.parse_args(list(argv))
    args.only = [s.strip().upper() for s in args.only.split(",") if s.strip()]
    if not args.only or set(args.only) - set(SCENARIOS):
        parser.error(f"--only takes scenarios among {','.join(SCENARIOS)}")
    if args.executors < 1:
        parser.error("--executors must be at least 1")
    return args


def backoff_allowance_s(config: Config, opts: LoadOptions) -> float:
    """The longest chain of retry delays the mix's tasks wait through (jitter at its most):
    always_fail retries max_attempts - 1 times, flaky -flaky-attempts times."""
    chains = []
    if opts.pct_fail:
        chains.append(config.tasks.max_attempts - 1)
    if opts.pct_flaky:
        chains.append(min(opts.flaky_attempts, config.tasks.max_attempts - 1))
    retries = max(chains, default=0)
    delays = (
        retry_delay_ms(
            k, base_ms=config.tasks.retry_base_ms, max_ms=config.tasks.retry_max_ms, jitter_ms=0
        )
        + config.tasks.retry_jitter_ms
        for k in range(1, retries + 1)
    )
    return sum(delays) / 1000


class Bench:
    """One benchmark run against a fresh database and namespace."""

    def __init__(self, args: argparse.Namespace, config: Config, cluster: Cluster) -> None:
        self.args = args
        self.config = config
        self.cluster = cluster
        self.scale = 10 if args.quick else 1
        self.url = f"http://127.0.0.1:{cluster.env['HTTP_PORT']}"
        self.database_url = cluster.env["DATABASE_URL"]
        self.result = Result(
            started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            quick=args.quick,
            executors=args.executors,
            worker_pool=config.executor.worker_pool,
        )
        self.db: Database | None = None

    def say(self, line: str) -> None:
        print(f"bench: {line}", file=sys.stderr, flush=True)

    async def run(self) -> Result:
        await self._fresh_database()
        db = await Database.connect(self.database_url, min_size=1, max_size=4)
        try:
            version = await server_version(self.database_url)
            self.result.machine = machine(self.config.stores.redis_url, version)
            await self._ceilings(db)
        finally:
            await db.close()
        if self.args.peers:
            await self._peers()
        await self._fresh_database()
        self.db = await Database.connect(self.database_url, min_size=1, max_size=4)
        try:
            for service in ("ingest", "watcher", "janitor"):
                self.cluster.start(service)
            await wait_ready(self.url, self.cluster)
            await self._scenarios()
        finally:
            await self.db.close()
            self.cluster.stop()
            streams = Streams.connect(
                self.config.stores.redis_url, Keys(self.cluster.env["TASKSTREAM_NAMESPACE"])
            )
            await streams.delete_namespace()
            await streams.close()
        return self.result

    async def _fresh_database(self) -> None:
        await db_mod.drop_database(self.database_url)
        await db_mod.create_database(self.database_url)
        await db_mod.migrate(self.database_url)

    async def _ceilings(self, db: Database) -> None:
        seconds = 1.5 if self.args.quick else 5.0
        self.say(f"raw ceilings (plain redis-py and asyncpg, a minimal table), {seconds:g} s each")
        raw = await bench_raw.measure(self.database_url, self.config.stores.redis_url, seconds)
        self.result.raw = raw
        self.result.rows += [
            Row(measure="ceiling: Redis stream loop, plain redis-py (XADD 500 pipelined, "
                "XREADGROUP 500, XACK 500)", result=f"{raw.redis_msgs_s:,.0f} msg/s",
                value=raw.redis_msgs_s),
            Row(measure="ceiling: Postgres INSERT from unnest, 500 rows a statement, minimal table",
                result=f"{raw.pg_insert_rows_s:,.0f} rows/s", value=raw.pg_insert_rows_s),
            Row(measure="ceiling: Postgres COPY, 500 rows a statement, minimal table",
                result=f"{raw.pg_copy_rows_s:,.0f} rows/s", value=raw.pg_copy_rows_s),
            Row(measure="ceiling: Postgres UPDATE from unnest, 500 rows a statement, minimal table",
                result=f"{raw.pg_update_rows_s:,.0f} rows/s", value=raw.pg_update_rows_s),
            Row(measure="ceiling: lean durable loop (minimal table; a producer process: INSERT "
                "500 + XADD; a consumer process: XREADGROUP 500, fenced UPDATE to running, to "
                "succeeded, XACK)", result=f"{raw.lean_tasks_s:,.0f} tasks/s",
                value=raw.lean_tasks_s),
        ]  # fmt: skip
        self.say(f"the same loop through taskstream's schema and modules, {seconds:g} s")
        keys = Keys(f"{self.cluster.env['TASKSTREAM_NAMESPACE']}-raw")
        streams = Streams.connect(self.config.stores.redis_url, keys)
        try:
            c = await bench_ceilings.measure(
                db,
                streams,
                seconds,
                database_url=self.database_url,
                redis_url=self.config.stores.redis_url,
            )
        finally:
            await streams.delete_namespace()
            await streams.close()
        self.result.ceilings = c
        self.result.rows.append(
            Row(measure="through our code: the durable loop on taskstream's tables, db and "
                f"streams modules (insert+XADD; read+claim+complete+XACK), "
                f"{c.durable_processes} processes", result=f"{c.durable_tasks_s:,.0f} tasks/s",
                vs_ceiling=_ratio(c.durable_tasks_s, raw.lean_tasks_s), value=c.durable_tasks_s)
        )  # fmt: skip

    async def _peers(self) -> None:
        """The peers' enqueue-and-drain rate for the same number of noop jobs (``--peers``)."""
        try:
            peers: Any = importlib.import_module("tools.peers")
        except ImportError as exc:
            raise BenchError(f"--peers: the peers' driver is not available here ({exc})") from exc
        n = 100_000 // self.scale
        self.say(f"peers: {', '.join(peers.PEERS)}, {n:,} noop jobs each")
        try:
            python = await asyncio.to_thread(peers.ensure_venv)
        except RuntimeError as exc:
            raise BenchError(str(exc)) from exc
        results = await asyncio.to_thread(
            peers.measure, python, self.config.stores.redis_url, n, processes=self.args.executors
        )
        for r in results:
            self.result.peers[r.name] = r.rate
            what = f"{r.rate:,.0f} jobs/s" if r.rate > 0 else f"failed: {r.note}"
            self.result.rows.append(
                Row(measure=f"peer: {r.name} {r.version}, {n:,} noop jobs, enqueue + drain, "
                    f"{self.args.executors} worker processes (nothing written to a database; "
                    f"{r.note})", result=what, value=r.rate)
            )  # fmt: skip

    async def _load(self, key: str, opts: LoadOptions) -> Report:
        self.say(f"{key}: {opts.burst()} via {opts.route()}")
        report = await run_load(
            opts, db=self.db, concurrency=self.config.executor.worker_pool, check=self.cluster.check
        )
        self.cluster.check()
        self.result.reports[key] = report
        if report.unfinished or report.rejected:
            raise BenchError(
                f"scenario {key}: {report.unfinished} unfinished, {report.rejected} rejected"
                + "".join(f"\n  {e}" for e in report.errors)
            )
        return report

    def _noop(self, **options: Any) -> LoadOptions:
        """Options for noop tasks, all of priority default, against this bench's ingest."""
        mix = dict(pct_noop=100, pct_flaky=0, pct_fail=0, pct_sleep=0, pct_critical=0,
                   pct_high=0, pct_default=100, pct_low=0)  # fmt: skip
        return LoadOptions(**{"url": self.url, "timeout": 900, **mix, **options})

    def _memory(self, label: str) -> None:
        self.result.memory_mib[label] = rss = self.cluster.rss()
        executors = [v for k, v in rss.items() if k.startswith("executor")]
        shown = f"ingest {rss.get('ingest', 0):.0f} MiB, executors " + ", ".join(
            f"{v:.0f}" for v in executors
        )
        self.result.rows.append(Row(measure=f"RSS {label}", result=shown + " MiB"))

    async def _start_executors(self) -> None:
        """Start the executors and wait until each has run a task."""
        self.cluster.start("executor")
        for _ in range(20):
            warm = self._noop(n=50 * self.args.executors, batch=50, timeout=60)
            report = await run_load(warm, db=self.db, check=self.cluster.check)
            if (report.executors or 0) >= self.args.executors:
                return
        raise BenchError("not every executor took tasks within the warm-up")

    async def _scenarios(self) -> None:
        n = 100_000 // self.scale
        if "C" in self.args.only:
            await self._scenario_c(n)
        await self._start_executors()
        if "A" in self.args.only:
            await self._scenario_a(n)
        if "B" in self.args.only:
            await self._scenario_b(30 / self.scale)
        if "D" in self.args.only:
            await self._scenario_d(10_000 // self.scale)
        if "E" in self.args.only:
            # Last: it restarts the services with API keys on and fair shares.
            await bench_fair.scenario_e(self, n)
        if self.args.memory_1m:
            million = self._noop(n=100_000, batch=500, w=4)
            for i in range(10):
                self.say(f"memory: round {i + 1} of 10 (100k tasks each)")
                await self._load("1M", million)
            self._memory("after 1M more tasks")
        self._memory("at the end")

    def _lean(self) -> float:
        return self.result.raw.lean_tasks_s if self.result.raw else 0.0

    async def _scenario_c(self, n: int) -> None:
        """Load n tasks while no executor runs, then start them: first start → last finish."""
        self.say(f"C: loading {n:,} tasks with no executor running, then draining them")
        opts = self._noop(n=n, batch=500, w=4)
        concurrency = self.config.executor.worker_pool
        check = self.cluster.check
        async with LoadRun(opts, db=self.db, concurrency=concurrency, check=check) as run:
            await run.submit()
            self.cluster.start("executor")
            report = await run.finish()
        self.cluster.check()
        self.result.reports["C"] = report
        rate = report.succeeded / report.process_s if report.process_s else 0.0
        self._row(
            measure=f"C: drain of {n:,} queued tasks (first start to last finish)",
            value=rate,
            result=f"{rate:,.0f} tasks/s",
            target=f">= {C_TARGET:,}/s",
            met=rate >= C_TARGET,
            ceiling=self._lean(),
        )
        self._memory(f"after C ({n:,} tasks)")

    async def _scenario_a(self, n: int) -> None:
        before = await bench_pg.sample(self.database_url)
        report = await self._load("A", self._noop(n=n, batch=500, w=4))
        used = self.result.postgres_a = await bench_pg.usage(self.database_url, before)
        rate = report.throughput
        best = max(self.result.peers.values(), default=0.0)
        target = f">= {A_TARGET:,}/s, >= {A_SHARE:.0%} of the lean loop"
        met = rate >= A_TARGET and rate >= A_SHARE * self._lean()
        if best:
            target += f", >= {PEER_MULTIPLE:g}x the best peer ({rate / best:.1f}x)"
            met = met and rate >= PEER_MULTIPLE * best
        self._row(
            measure=f"A: {n:,} noop via the batch route, first accepted to last succeeded",
            value=rate,
            result=f"{rate:,.0f} tasks/s",
            target=target,
            met=met,
            ceiling=self._lean(),
        )
        wal, cpu = used.per_task(report.succeeded)
        cpu_text = "unknown (server not readable here)" if cpu is None else f"{cpu:,.0f} µs"
        hot = used.hot_share()
        self.result.rows.append(
            Row(measure="A: Postgres per task (WAL of the whole server; CPU of all its processes)",
                result=f"{wal:,.0f} WAL bytes, {cpu_text} CPU", value=wal)
        )  # fmt: skip
        self.result.rows.append(
            Row(measure="A: of that WAL, full-page images (after a checkpoint, the first change "
                "of each page writes all of it); task updates that were HOT",
                result=f"{used.fpi:,} images in {used.checkpoints} checkpoint(s); "
                + ("HOT unknown" if hot is None else f"{hot:.0%} HOT of {used.updates:,}"),
                value=used.fpi)
        )  # fmt: skip
        self._memory(f"after A ({n:,} tasks)")

    async def _scenario_b(self, seconds: float) -> None:
        report = await self._load("B", self._noop(rate=1000, duration=seconds, w=64))
        title = f"B: open loop, 1,000/s for {seconds:g} s, single route: enqueue to start"
        self._row(
            measure=f"B: open loop, 1,000/s for {seconds:g} s, single route: answered at",
            value=report.submit_rate,
            result=f"{report.submit_rate:,.0f}/s (request p99 {fmt_ms(report.accept_p99_ms)})",
            target="1,000/s",
            met=None,
        )
        figures = (
            ("p50", report.wait_p50_ms, B_P50_MS),
            ("p99", report.wait_p99_ms, B_P99_MS),
            ("max", report.wait_max_ms, None),
        )
        for name, value, limit in figures:
            self._row(
                measure=f"{title} {name}",
                value=value,
                result=fmt_ms(value),
                target=f"<= {limit:g} ms" if limit else "",
                met=None if limit is None or value is None else value <= limit,
            )

    async def _scenario_d(self, n: int) -> None:
        """The mix as the Go scheduler's load generator sends it (one task a request, 16 at a
        time), then the same mix through the batch route: the drain left once submitting
        stops being the bottleneck."""
        variants = (
            ("D", LoadOptions(n=n, url=self.url, timeout=900), "single route, 16 at a time"),
            ("D-batch", LoadOptions(n=n, url=self.url, timeout=900, batch=100, w=4),
             "batch route, 100 a request"),
        )  # fmt: skip
        for key, opts, how in variants:
            allowance = backoff_allowance_s(self.config, opts)
            report = await self._load(key, opts)
            self._row(
                measure=f"D: the Go scheduler's mix, {n:,} tasks, {how}: drain time "
                f"({report.fail_pct:.1f} % dead, {report.retries:,} retries)",
                value=report.drain_s,
                result=fmt_ms(report.drain_s * 1000),
                target=f"<= {D_SLACK_S:g} s + {allowance:.1f} s of backoff",
                met=report.drain_s <= D_SLACK_S + allowance,
            )

    def _row(
        self,
        *,
        measure: str,
        value: float | None,
        result: str,
        target: str,
        met: bool | None,
        ceiling: float = 0.0,
    ) -> None:
        ratio = _ratio(value, ceiling)
        self.result.rows.append(
            Row(
                measure=measure,
                result=result,
                target=target,
                vs_ceiling=ratio,
                met=met,
                value=value,
            )
        )


def _ratio(value: float | None, ceiling: float) -> str:
    return f"{value / ceiling:.0%}" if value and ceiling else ""


def render(result: Result) -> str:
    m = result.machine
    rows: list[list[str]] = []
    if m is not None:
        rows += [
            ["machine", m.describe(), "", "", ""],
            ["software", f"Python {m.python}, Redis {m.redis}, Postgres {m.postgres}", "", "", ""],
        ]
    rows.append(
        ["services", f"{result.executors} executors x {result.worker_pool} handlers", "", "", ""]
    )
    for r in result.rows:
        mark = "" if r.met is None else ("met" if r.met else "MISSED")
        rows.append([r.measure, r.result, r.target, r.vs_ceiling, mark])
    header = ["measure", "result", "target", "vs ceiling", ""]
    title = f"taskstream bench{' --quick' if result.quick else ''}, {result.started}"
    if result.error:
        title += f" (stopped early: {result.error})"
    return title + "\n\n" + markdown(header, rows, right={3})


def bench_main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    try:
        config = config_mod.load()
    except TaskstreamError as exc:
        print(f"taskstream bench: {exc}", file=sys.stderr)
        return 2
    database_url = db_mod.with_database(config.stores.database_url, BENCH_DB)
    log = lambda line: print(f"bench: {line}", file=sys.stderr, flush=True)  # noqa: E731
    try:
        stores = ensure(config.stores.redis_url, database_url, args.state_dir.resolve(), log=log)
    except StoreError as exc:
        print(f"taskstream bench: {exc}", file=sys.stderr)
        return 1
    env = dict(
        os.environ,
        REDIS_URL=stores.redis_url,
        DATABASE_URL=stores.database_url,
        TASKSTREAM_NAMESPACE=f"bench-{uuid.uuid4().hex[:8]}",
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=str(free_port()),
        METRICS_ADDR="",
        LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
    )
    cluster = Cluster(env, args.executors)
    bench = Bench(args, config_mod.replace(config, redis_url=stores.redis_url), cluster)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    code = 0
    with stores:
        try:
            run_async(bench.run)
        except KeyboardInterrupt:
            bench.result.error, code = "interrupted", 130
        except (TaskstreamError, LoadError) as exc:
            bench.result.error, code = str(exc), 1
        finally:
            cluster.stop()
            signal.signal(signal.SIGTERM, previous)
    if bench.result.error:
        print(f"taskstream bench: {bench.result.error}; stopped", file=sys.stderr)
    if args.json:
        print(msgspec.json.format(msgspec.json.encode(bench.result), indent=2).decode())
    elif bench.result.rows:
        print(render(bench.result))
    return code


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


async def server_version(database_url: str) -> str:
    """Postgres's version, for the machine line."""
    conn = await asyncpg.connect(database_url)
    try:
        return str(await conn.fetchval("SELECT current_setting('server_version')"))
    finally:
        await conn.close()
