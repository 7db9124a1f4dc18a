"""What a scenario costs Postgres: WAL bytes written and CPU spent by the server's processes.

WAL comes from ``pg_current_wal_lsn()`` before and after (the whole cluster's WAL, so other
databases' writes on the same server count too: keep the machine quiet). CPU is the user and
system time of the postmaster and all its children (backends, WAL writer, checkpointer…) read
from ``/proc``, which needs the server on this machine; elsewhere it is reported as unknown.
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


class Usage(msgspec.Struct, kw_only=True):
    wal_bytes: int
    cpu_s: float | None

    def per_task(self, n: int) -> tuple[float, float | None]:
        """WAL bytes and CPU microseconds per task."""
        if n <= 0:
            return 0.0, None
        cpu = None if self.cpu_s is None else self.cpu_s * 1e6 / n
        return self.wal_bytes / n, cpu


async def sample(database_url: str) -> Sample:
    conn = await asyncpg.connect(database_url)
    try:
        lsn = int(await conn.fetchval("SELECT pg_current_wal_lsn()"))
        cpu = server_cpu_s(int(await conn.fetchval("SELECT pg_backend_pid()")))
    finally:
        await conn.close()
    return Sample(lsn=lsn, cpu_s=cpu)


async def usage(database_url: str, before: Sample) -> Usage:
    after = await sample(database_url)
    cpu = None
    if before.cpu_s is not None and after.cpu_s is not None:
        cpu = max(0.0, after.cpu_s - before.cpu_s)
    return Usage(wal_bytes=after.lsn - before.lsn, cpu_s=cpu)


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
