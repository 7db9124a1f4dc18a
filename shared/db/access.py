"""API keys: create (stored hashed), find by hash, list, revoke, note their use."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from taskstream.shared import sql
from taskstream.shared import sql_access as q
from taskstream.shared.db.base import Base
from taskstream.shared.domain import Publisher, Ready
from taskstream.shared.domain.access import (
    SHOWN_PREFIX,
    ApiKey,
    ConcurrencyLimit,
    CreatedKey,
    StoredKey,
    TenantLimits,
    key_hash,
    new_key,
)
from taskstream.shared.ids import new_id


def _api_key(row: Any) -> ApiKey:
    return ApiKey(
        id=row["id"],
        tenant=row["tenant"],
        scopes=list(row["scopes"]),
        name=row["name"],
        prefix=row["prefix"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )


def _tenant(row: Any) -> TenantLimits:
    return TenantLimits(
        name=row["name"],
        rate_per_s=row["rate_per_s"],
        burst=row["burst"],
        max_in_flight=row["max_in_flight"],
        max_payload_bytes=row["max_payload_bytes"],
        weight=row["weight"],
        in_flight=row.get("in_flight"),
    )


class AccessQueries(Base):
    """API keys (create, stored hashed; find by hash, list, revoke, note their use) and the
    tenants' limits."""

    async def create_api_key(
        self,
        tenant: str,
        scopes: Sequence[str],
        *,
        name: str | None = None,
        expires_at: dt.datetime | None = None,
        key: str | None = None,
    ) -> CreatedKey | None:
        """A new key (``key``: this one, else a random one), stored as its SHA-256. With a
        given ``key`` that is stored already, nothing changes and None is returned."""
        token = key or new_key()
        args = (new_id(), tenant, sorted(scopes), name, token[:SHOWN_PREFIX], key_hash(token),
                expires_at)  # fmt: skip
        row = await self._pool.fetchrow(q.ENSURE_API_KEY if key else q.INSERT_API_KEY, *args)
        return None if row is None else CreatedKey(key=token, api_key=_api_key(row))

    async def api_key_by_hash(self, digest: bytes) -> StoredKey | None:
        row = await self._pool.fetchrow(q.API_KEY_BY_HASH, digest)
        if row is None:
            return None
        return StoredKey(key=_api_key(row), key_hash=bytes(row["key_hash"]))

    async def list_api_keys(
        self, tenant: str | None, *, revoked: bool = False, limit: int = 1000
    ) -> list[ApiKey]:
        rows = await self._pool.fetch(q.LIST_API_KEYS, tenant, revoked, limit)
        return [_api_key(r) for r in rows]

    async def revoke_api_key(self, key_id: uuid.UUID, tenant: str | None = None) -> ApiKey | None:
        """Revoke a key (of ``tenant`` only, when given); None if there is no such key."""
        row = await self._pool.fetchrow(q.REVOKE_API_KEY, key_id, tenant)
        return None if row is None else _api_key(row)

    async def touch_api_keys(self, ids: Sequence[uuid.UUID]) -> None:
        if ids:
            await self._pool.execute(q.TOUCH_API_KEYS, list(ids))

    async def set_tenant(self, limits: TenantLimits) -> TenantLimits:
        """Store a tenant's limits (replacing what it had). A quota set on a tenant whose tasks
        were not counted starts counting those in flight now, in the same transaction."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                q.UPSERT_TENANT,
                limits.name,
                limits.rate_per_s,
                limits.burst,
                limits.max_in_flight,
                limits.max_payload_bytes,
                limits.weight,
            )
            if limits.max_in_flight is not None:
                await conn.execute(q.ENSURE_USAGE, limits.name)
                await conn.execute(q.COUNT_IN_FLIGHT, limits.name)
        return _tenant(row)

    async def tenants(self, name: str | None = None) -> list[TenantLimits]:
        """Every tenant with limits (or the one named), with its counted tasks in flight."""
        return [_tenant(r) for r in await self._pool.fetch(q.LIST_TENANTS, name)]

    async def concurrency_limits(self, kind: str | None = None) -> list[ConcurrencyLimit]:
        rows = await self._pool.fetch(q.CONCURRENCY_LIMITS, kind)
        return [ConcurrencyLimit(**dict(r)) for r in rows]

    async def set_concurrency_limit(
        self, kind: str, name: str, max_running: int
    ) -> ConcurrencyLimit:
        row = await self._pool.fetchrow(q.SET_CONCURRENCY_LIMIT, kind, name, max_running)
        return ConcurrencyLimit(**dict(row))

    async def clear_concurrency_limit(self, kind: str, name: str) -> ConcurrencyLimit | None:
        row = await self._pool.fetchrow(q.CLEAR_CONCURRENCY_LIMIT, kind, name)
        return None if row is None else ConcurrencyLimit(**dict(row))

    async def capped_tasks(
        self,
        ids: Sequence[uuid.UUID],
        attempts: Sequence[int],
        types: Sequence[str],
        tenants: Sequence[str],
    ) -> dict[uuid.UUID, tuple[str, str]]:
        """Of these deliveries, the queued tasks of a capped type or tenant: (type, tenant)."""
        rows = await self._pool.fetch(
            q.CAPPED_TASKS, list(ids), list(attempts), list(types), list(tenants)
        )
        return {r["id"]: (r["type"], r["tenant"]) for r in rows}

    async def wait_for_slot(
        self, waits: Sequence[tuple[uuid.UUID, int, str, str]]
    ) -> set[uuid.UUID]:
        """Set tasks aside until their cap ``(kind, name)`` has a free slot: ``(id, attempt,
        kind, name)`` each; returns the ids set aside (still queued at that attempt)."""
        if not waits:
            return set()
        ids, attempts, kinds, names = (list(c) for c in zip(*waits, strict=True))
        rows = await self._pool.fetch(q.WAIT_FOR_SLOT, ids, attempts, kinds, names)
        return {r["task_id"] for r in rows}

    async def waiting_caps(self) -> dict[tuple[str, str], int]:
        """The caps tasks wait on, and how many wait on each."""
        rows = await self._pool.fetch(q.WAITING_CAPS)
        return {(r["kind"], r["name"]): int(r["n"]) for r in rows}

    async def unwait(self, kind: str, name: str, limit: int, publish: Publisher) -> list[Ready]:
        """Release up to ``limit`` tasks waiting on a cap: commit, then ``publish`` them, then
        delete their outbox row (a crash in between leaves them to the outbox's repair)."""
        rows = await self._pool.fetch(q.UNWAIT, kind, name, limit)
        ready = [
            Ready(id=r["id"], attempt=r["attempt"], priority=r["priority"],
                  trace_context=r["trace_context"], outbox_id=r["outbox_id"])
            for r in rows
        ]  # fmt: skip
        if ready:
            await publish(ready)
            if ready[0].outbox_id is not None:
                await self._pool.execute(sql.OUTBOX_DONE, [ready[0].outbox_id])
        return ready

    async def tenant_counts(self) -> dict[str, int]:
        """Tenants ``known`` (a working key, or limits), ``limited`` (limits set) and
        ``capped`` (a concurrency cap)."""
        row = await self._pool.fetchrow(q.TENANT_COUNTS)
        return {k: int(row[k]) for k in ("known", "limited", "capped")}

    async def hold_fair(self, held: Sequence[tuple[uuid.UUID, int, str, str, str | None]]) -> None:
        """Keep back tasks beyond their tenant's fair share, ``(id, attempt, priority, tenant,
        trace context)`` each: they stay queued, with no entry, until the fair role publishes
        them."""
        if held:
            await self._pool.execute(q.HOLD_FAIR, *(list(c) for c in zip(*held, strict=True)))

    async def held_tenants(self) -> list[str]:
        return [r["tenant"] for r in await self._pool.fetch(q.HELD_TENANTS)]

    async def release_fair(self, tenant: str, limit: int) -> list[Ready]:
        """Take up to ``limit`` of a tenant's held tasks off the table (committed): the
        caller publishes them, then deletes their outbox row (``outbox_done``)."""
        rows = await self._pool.fetch(q.RELEASE_FAIR, tenant, limit)
        return [
            Ready(id=r["id"], attempt=r["attempt"], priority=r["priority"],
                  trace_context=r["trace_context"], outbox_id=r["outbox_id"])
            for r in rows
        ]  # fmt: skip
