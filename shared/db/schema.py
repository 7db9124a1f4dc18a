"""Creating, migrating and dropping databases (numbered SQL files, an advisory lock)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from taskstream.shared.db.base import log
from taskstream.shared.db.boundary import wrap

# Package data of `taskstream` (the repository's migrations/ in a source tree).
MIGRATIONS_DIR = Path(str(files("taskstream") / "migrations"))


# Any constant will do, as long as every migrator uses the same one.
MIGRATION_LOCK = 0x7461736B  # "task"


@wrap
async def migrate(url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the numbered SQL files not yet applied, in order, each in its own transaction.

    Safe when several migrators start at once: they queue on an advisory lock. Returns the
    names of the files applied by this call.
    """
    files = sorted(p for p in directory.glob("*.sql") if p.name[:4].isdigit())
    conn = await _connect(url)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_version (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_version")}
            for path in files:
                version = int(path.name.split("_", 1)[0])
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute(
                        "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
                        version,
                        path.name,
                    )
                log.info("applied migration %s", path.name, extra={"event": "db.migrated"})
                applied.append(path.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    finally:
        await conn.close()
    return applied


@wrap
async def schema_version(url: str) -> int:
    conn = await _connect(url)
    try:
        value = await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
        return int(value)
    finally:
        await conn.close()


@wrap
async def create_database(url: str, *, template: str | None = None) -> bool:
    """Create the database named in ``url`` if it does not exist; True if it was created."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/") or "postgres"
    admin = await _connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        clause = f" TEMPLATE {_ident(template)}" if template else ""
        try:
            await admin.execute(f"CREATE DATABASE {_ident(name)}{clause}")
        except asyncpg.DuplicateDatabaseError:
            return False
        return True
    finally:
        await admin.close()


@wrap
async def drop_database(url: str) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = await _connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")
    finally:
        await admin.close()


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name``."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


async def _connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(url, timeout=10)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
