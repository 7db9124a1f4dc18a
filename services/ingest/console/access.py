"""Sign-in to the console with the API's own credentials: an API key (or, where the API takes
them, a JWT) becomes a console principal with the key's tenant and scopes, and every request
re-checks it (a revoked or expired key ends its sessions at once: one lookup by the key's hash,
which is what the session keeps, never the key).

A key without ``ops:read`` cannot sign in: the console is for operators. An admin key sees
every tenant (``tenant`` None); any other key sees only its own tenant's tasks, dead letters,
pending entries and schedules.
"""

from __future__ import annotations

import time

import jwt

from taskstream.services.ingest.console.session import Principal
from taskstream.services.ingest.credentials import Authenticator, Unauthorized
from taskstream.shared.db import Database
from taskstream.shared.domain.access import OPS_READ, key_hash, looks_like_key

_KEY = "key:"
_JWT = "jwt:"


class KeyAccess:
    """The console's ``Access`` over the API's ``Authenticator``."""

    def __init__(self, authenticator: Authenticator, db: Database) -> None:
        self._auth = authenticator
        self._db = db
        self.required = authenticator.enabled

    async def sign_in(self, api_key: str) -> Principal | None:
        token = api_key.strip()
        try:
            who = await self._auth.authenticate(f"Bearer {token}")
        except Unauthorized:
            return None
        if not who.allows(OPS_READ):
            return None
        if looks_like_key(token):
            ref = _KEY + key_hash(token).hex()
            name = f"key {who.subject[:8]}"
        else:  # a JWT: valid until its exp (verified, so present)
            exp = jwt.decode(token, options={"verify_signature": False}).get("exp", 0)
            ref = _JWT + str(int(exp))
            name = f"token {who.subject}" if who.subject else "token"
        return Principal(
            name=f"{name} · {who.tenant}",
            key_id=ref,
            tenant=who.view,
            scopes=frozenset(who.scopes),
        )

    async def still_valid(self, principal: Principal) -> bool:
        ref = principal.key_id or ""
        if ref.startswith(_JWT):
            return int(ref[len(_JWT) :]) > time.time()
        if not ref.startswith(_KEY):
            return False
        stored = await self._db.api_key_by_hash(bytes.fromhex(ref[len(_KEY) :]))
        if stored is None:
            return False
        key = stored.key
        if key.revoked_at is not None:
            return False
        return key.expires_at is None or key.expires_at.timestamp() > time.time()
