"""API keys: create (stored hashed), find by hash, list, revoke, note their use."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from taskstream.shared import sql_access as q
from taskstream.shared.db.base import Base
from taskstream.shared.domain.access import (
    SHOWN_PREFIX,
    ApiKey,
    CreatedKey,
    StoredKey,
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


class AccessQueries(Base):
    """API keys: create (stored hashed), find by hash, list, revoke, note their use."""

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
