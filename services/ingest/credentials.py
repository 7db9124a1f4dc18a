"""Checking a bearer token: an API key (looked up by its hash, cached briefly) or a JWT
(PyJWT, the one configured algorithm only). Either gives a ``Principal`` or ``Unauthorized``.

Revocation: a key revoked through this process's admin route stops working at once; revoked
elsewhere (the CLI, another ingest), it works at most ``API_KEY_CACHE_MS`` longer here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt

from taskstream.shared.config import AccessConfig, auth_kinds
from taskstream.shared.db import Database
from taskstream.shared.domain.access import (
    SCOPES,
    Principal,
    StoredKey,
    key_hash,
    looks_like_key,
    valid_tenant,
)
from taskstream.shared.errors import StoreError, TaskstreamError

log = logging.getLogger(__name__)

CACHE_MAX = 10_000  # keys remembered per process (cleared when full)


class Unauthorized(TaskstreamError):
    """No credential, or one that does not authenticate (401)."""


class KeyVerifier:
    """API keys: the SHA-256 of the token is looked up, the stored hash compared in constant
    time, then revocation and expiry checked. Lookups (hits and misses) are cached for
    ``cache_ms``; ``last_used_at`` is written in the background at most every ``touch_ms``."""

    def __init__(
        self,
        db: Database,
        *,
        cache_ms: int,
        touch_ms: int,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._cache_s = cache_ms / 1000
        self._touch_s = touch_ms / 1000
        self._clock = clock
        self._wall = wall
        self._cache: dict[bytes, tuple[StoredKey | None, float]] = {}
        self._touched: dict[uuid.UUID, float] = {}
        self._touching: set[asyncio.Task[None]] = set()

    async def verify(self, token: str) -> Principal:
        digest = key_hash(token)
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[1] < self._cache_s:
            stored = cached[0]
        else:
            stored = await self._db.api_key_by_hash(digest)
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            self._cache[digest] = (stored, now)
        if stored is None or not hmac.compare_digest(stored.key_hash, digest):
            raise Unauthorized("unknown API key")
        key = stored.key
        if key.revoked_at is not None:
            raise Unauthorized("this API key was revoked")
        if key.expires_at is not None and key.expires_at.timestamp() <= self._wall():
            raise Unauthorized("this API key has expired")
        self._touch(key.id, now)
        return Principal(
            tenant=key.tenant, scopes=frozenset(key.scopes), kind="key", subject=str(key.id)
        )

    def forget(self) -> None:
        """Drop every cached lookup (after a revocation through this process)."""
        self._cache.clear()

    def _touch(self, key_id: uuid.UUID, now: float) -> None:
        last = self._touched.get(key_id)
        if last is not None and now - last < self._touch_s:
            return
        if len(self._touched) >= CACHE_MAX:
            self._touched.clear()
        self._touched[key_id] = now
        task = asyncio.get_running_loop().create_task(self._write_touch(key_id))
        self._touching.add(task)
        task.add_done_callback(self._touching.discard)

    async def _write_touch(self, key_id: uuid.UUID) -> None:
        try:
            await self._db.touch_api_keys([key_id])
        except StoreError as exc:  # only a timestamp: the next use tries again
            self._touched.pop(key_id, None)
            log.info("cannot note a key's use: %s", exc, extra={"event": "auth.touch_failed"})

    async def close(self) -> None:
        for task in list(self._touching):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class JwtVerifier:
    """JWTs signed with the one configured algorithm (``algorithms`` is always that one:
    ``alg: none`` and an HS256 token signed with an RS256 public key are refused). ``exp`` is
    required; ``iss`` and ``aud`` are checked when configured. The tenant comes from
    ``JWT_TENANT_CLAIM``, the scopes from ``JWT_SCOPES_CLAIM``."""

    def __init__(self, access: AccessConfig) -> None:
        self._a = access
        self._algorithm = access.jwt_algorithm
        self._key: Any = None
        self._jwks: dict[str, Any] = {}
        if self._algorithm == "HS256":
            self._key = access.jwt_secret
        elif access.jwt_jwks_file:
            keyset = jwt.PyJWKSet.from_dict(json.loads(Path(access.jwt_jwks_file).read_text()))
            self._jwks = {k.key_id or "": k.key for k in keyset.keys}
        else:
            pem = access.jwt_public_key
            if not pem.lstrip().startswith("-----BEGIN"):
                pem = Path(pem).read_text()
            self._key = pem
        require = ["exp", *(["iss"] if access.jwt_issuer else []),
                   *(["aud"] if access.jwt_audience else [])]  # fmt: skip
        self._options: Any = {"require": require, "verify_aud": bool(access.jwt_audience)}
        # A token that checked out, until its exp (a JWT cannot be revoked): checking the
        # signature again costs ~40 µs a request, the lookup well under 1.
        self._checked: dict[str, tuple[Principal, float]] = {}

    def verify(self, token: str, now: float | None = None) -> Principal:
        at = time.time() if now is None else now
        seen = self._checked.get(token)
        if seen is not None and at < seen[1]:
            return seen[0]
        who, exp = self._verify(token)
        if len(self._checked) >= CACHE_MAX:
            self._checked.clear()
        self._checked[token] = (who, exp)
        return who

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            key = self._key if not self._jwks else self._jwk(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=[self._algorithm],
                audience=self._a.jwt_audience or None,
                issuer=self._a.jwt_issuer or None,
                leeway=self._a.jwt_leeway_s,
                options=self._options,
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {exc}") from None
        tenant = claims.get(self._a.jwt_tenant_claim)
        if not isinstance(tenant, str) or not valid_tenant(tenant):
            raise Unauthorized(f"the token's {self._a.jwt_tenant_claim!r} claim names no tenant")
        raw = claims.get(self._a.jwt_scopes_claim, "")
        scopes = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
        known = frozenset(s for s in scopes if isinstance(s, str) and s in SCOPES)
        subject = str(claims.get("sub", ""))
        who = Principal(tenant=tenant, scopes=known, kind="jwt", subject=subject)
        return who, float(claims["exp"])

    def _jwk(self, token: str) -> Any:
        kid = jwt.get_unverified_header(token).get("kid") or ""
        if kid in self._jwks:
            return self._jwks[kid]
        if not kid and len(self._jwks) == 1:
            return next(iter(self._jwks.values()))
        raise jwt.InvalidKeyError(f"no key {kid!r} in the JWKS file")


class Authenticator:
    """The configured credential kinds (``AUTH_MODE``), tried by the token's shape: a token
    that looks like an API key is one; anything else is a JWT."""

    def __init__(self, access: AccessConfig, db: Database) -> None:
        kinds = auth_kinds(access)
        self.enabled = bool(kinds)
        self.keys = (
            KeyVerifier(db, cache_ms=access.api_key_cache_ms, touch_ms=access.api_key_touch_ms)
            if "keys" in kinds
            else None
        )
        self.jwt = JwtVerifier(access) if "jwt" in kinds else None

    async def authenticate(self, header: str | None) -> Principal:
        if not header:
            raise Unauthorized("this route needs Authorization: Bearer <API key or JWT>")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("the Authorization header must be Bearer <API key or JWT>")
        if looks_like_key(token):
            if self.keys is None:
                raise Unauthorized("API keys are not accepted here (AUTH_MODE)")
            return await self.keys.verify(token)
        if self.jwt is None:
            raise Unauthorized("not an API key (JWTs are not accepted here: AUTH_MODE)")
        return self.jwt.verify(token)

    async def close(self) -> None:
        if self.keys is not None:
            await self.keys.close()
