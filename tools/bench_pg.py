"""What a scenario costs Postgres: WAL bytes written and CPU spent by the server's processes.

WAL comes from ``pg_current_wal_lsn()`` before and after (the whole cluster's WAL, so other
databases' writes on the same server count too: keep the machine quiet). CPU is the user and
system time of the postmaster and all its children (backends, WAL writer, checkpointer…) read
from ``/proc``, which needs the server on this machine; elsewhere it is reported as unknown.
Beside them: the full-page images in that WAL and the checkpoints that made them
(``pg_stat_wal``, ``pg_stat_bgwriter``: the first change of a page after a checkpoint writes the
whole page, so a checkpoint during a run multiplies its WAL) and the share of the task row's
updates that were HOT (``pg_stat_user_tables``; the statistics reach it within a second).
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg
import msgspec

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class Sample(msgspec.Struct, kw_only=True):
    lsn: int  # asyncpg decodes a pg_lsn as its byte position
    cpu_s: float | None  # None: the server's processes cannot be read from here
    fpi: int = 0
    checkpoints: int = 0
    updates: int = 0  # of tasks rows
    hot_updates: int = 0


class Usage(msgspec.Struct, kw_only=True):
    wal_bytes: int
    cpu_s: float | None
    fpi: int = 0  # full-page images written
    checkpoints: int = 0  # begun during the run
    updates: int = 0
    hot_updates: int = 0

    def hot_share(self) -> float | None:
        return self.hot_updates / self.updates if self.updates else None

    def per_task(self, n: int) -> tuple[float, float | None]:
        """WAL bytes and CPU microseconds per task."""
        if n <= 0:
            return 0.0, None
        cpu = None if self.cpu_s is None else self.cpu_s * 1e6 / n
        return self.wal_bytes / n, cpu


async def sample(database_url: str) -> Sample:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        row = await conn.fetchrow(
            "SELECT pg_current_wal_lsn() AS lsn, pg_backend_pid() AS pid,"
            " (SELECT wal_fpi FROM pg_stat_wal) AS fpi,"
            " (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter) AS checkpoints,"
            " coalesce((SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'tasks'), 0)"
            "   AS updates,"
            " coalesce((SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'tasks'), 0)"
            "   AS hot"
        )
        cpu = server_cpu_s(int(row["pid"]))
    finally:
        await conn.close()
    return Sample(
        lsn=int(row["lsn"]),
        cpu_s=cpu,
        fpi=int(row["fpi"]),
        checkpoints=int(row["checkpoints"]),
        updates=int(row["updates"]),
        hot_updates=int(row["hot"]),
    )


async def usage(database_url: str, before: Sample) -> Usage:
    after = await sample(database_url)
    cpu = None
    if before.cpu_s is not None and after.cpu_s is not None:
        cpu = max(0.0, after.cpu_s - before.cpu_s)
    return Usage(
        wal_bytes=after.lsn - before.lsn,
        cpu_s=cpu,
        fpi=after.fpi - before.fpi,
        checkpoints=after.checkpoints - before.checkpoints,
        updates=after.updates - before.updates,
        hot_updates=after.hot_updates - before.hot_updates,
    )


def server_cpu_s(backend_pid: int) -> float | None:
    """CPU seconds used so far by the server a backend belongs to (postmaster and children).

    A backend that exited between two samples takes its time with it; the benchmark's
    services keep their pools open through a scenario, so what is lost is the sampling
    connections' own (a few milliseconds)."""
    postmaster = _stat(backend_pid)
    if postmaster is None:
        return None
    parent = postmaster[0]
    total = 0.0
    found = False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is None:
            continue
        ppid, ticks = stat
        if int(entry.name) == parent or ppid == parent:
            total += ticks / TICKS
            found = True
    return total if found else None


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, user + system ticks) of a process, or None when it cannot be read."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name is in parentheses and may hold spaces: split after its closing one
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])
