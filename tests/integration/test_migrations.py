"""Migrations apply to an empty database, run twice safely, and every query prepares."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from taskstream.shared import db as db_mod
from taskstream.shared import sql, sql_access, sql_schedules, sql_workflows
from taskstream.shared.db import Database
from tests.conftest import SERVER_URL


async def test_migrations_apply_to_empty_database_and_are_idempotent() -> None:
    url = db_mod.with_database(SERVER_URL, f"ts_mig_{uuid.uuid4().hex[:10]}")
    await db_mod.create_database(url)
    try:
        first = await db_mod.migrate(url)
        assert first and first[0].startswith("0001_")
        assert await db_mod.migrate(url) == []
        assert await db_mod.schema_version(url) == int(first[-1][:4])
    finally:
        await db_mod.drop_database(url)


async def test_two_migrators_at_once_apply_each_file_once() -> None:
    url = db_mod.with_database(SERVER_URL, f"ts_mig_{uuid.uuid4().hex[:10]}")
    await db_mod.create_database(url)
    try:
        results = await asyncio.gather(*(db_mod.migrate(url) for _ in range(4)))
        applied = [name for r in results for name in r]
        assert len(applied) == len(set(applied)) == len(max(results, key=len))
    finally:
        await db_mod.drop_database(url)


async def test_every_named_query_prepares(db: Database) -> None:
    prepared = await db.prepare_all()
    assert set(prepared) == (
        set(sql.ALL) | set(sql_schedules.ALL) | set(sql_workflows.ALL) | set(sql_access.ALL)
    )
    assert "CLAIM" in prepared and "INSERT_TASKS" in prepared and "FIRE_RUNS" in prepared


async def test_a_connection_back_in_the_pool_never_carries_an_open_transaction(
    config: Any,
) -> None:
    db = await Database.connect(config.stores.database_url, min_size=1, max_size=1)
    try:
        async with db._pool.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("CREATE TABLE leak (x int)")
        async with db._pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT to_regclass('leak')") is None
    finally:
        await db.close()
