"""Console sessions: who is signed in, the signed cookie that carries it, and CSRF tokens.

A session is a signed cookie (HMAC-SHA256 under ``CONSOLE_SECRET``), ``HttpOnly``,
``SameSite=Strict``, ``Secure`` when the console is reached over TLS, and limited to
``/ui/``; it holds the principal (its name, tenant and scopes) and a random id. Every form
carries a CSRF token derived from that id, and every POST must bring it back (a form field or
the ``X-CSRF-Token`` header that htmx sends).

Sign-in plugs into one place, ``Access``: ``sign_in`` turns an API key into a principal and
``still_valid`` re-checks a session's principal on each request (a revoked key ends its
sessions). ``OpenAccess`` is the one for an API without authentication: nobody signs in and
everyone is the local operator with every scope.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Protocol

import msgspec

COOKIE = "taskstream_console"
WRITE = "ops:write"
READ = "ops:read"
ADMIN = "admin"
ALL_SCOPES = frozenset({"tasks:write", "tasks:read", "ops:read", "ops:write", "admin"})


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who uses the console: a name to show, the key's id (re-checked on each request), its
    tenant (None: every tenant, for admins) and its scopes."""

    name: str
    key_id: str | None = None
    tenant: str | None = None
    scopes: frozenset[str] = frozenset()

    def can(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


class Session(msgspec.Struct, frozen=True, kw_only=True):
    sid: str
    principal: Principal | None  # None: not signed in yet (the login form's own session)
    expires_ms: int


class Access(Protocol):
    """How the console signs people in."""

    @property
    def required(self) -> bool:
        """Whether a principal must sign in (an API with authentication)."""
        ...

    async def sign_in(self, api_key: str) -> Principal | None:
        """The principal of a valid API key; None for an unknown or revoked one."""
        ...

    async def still_valid(self, principal: Principal) -> bool:
        """Whether a signed-in principal may go on (its key not revoked or expired)."""
        ...


LOCAL = Principal(name="local operator", scopes=ALL_SCOPES)


class OpenAccess:
    """No authentication: everyone is the local operator."""

    required = False

    async def sign_in(self, api_key: str) -> Principal | None:
        return LOCAL

    async def still_valid(self, principal: Principal) -> bool:
        return True


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Session).decode


class Sessions:
    """Makes and reads signed session cookies and their CSRF tokens."""

    def __init__(self, secret: str, ttl_ms: int) -> None:
        # No configured secret: a random one, so sessions end with the process.
        self._key = (secret or secrets.token_hex(32)).encode()
        self._ttl_ms = ttl_ms

    def new(self, principal: Principal | None) -> Session:
        expires = int(time.time() * 1000) + self._ttl_ms
        return Session(sid=secrets.token_urlsafe(18), principal=principal, expires_ms=expires)

    def dump(self, session: Session) -> str:
        body = base64.urlsafe_b64encode(_encode(session)).decode().rstrip("=")
        return f"{body}.{self._sign(body)}"

    def load(self, cookie: str | None) -> Session | None:
        """The session a cookie holds; None when absent, forged, malformed or expired."""
        if not cookie or "." not in cookie:
            return None
        body, signature = cookie.rsplit(".", 1)
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            session = _decode(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (msgspec.DecodeError, ValueError):
            return None
        if session.expires_ms < time.time() * 1000:
            return None
        return session

    def csrf(self, session: Session) -> str:
        return self._sign("csrf:" + session.sid)

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token), self.csrf(session))

    @property
    def max_age_s(self) -> int:
        return self._ttl_ms // 1000

    def _sign(self, text: str) -> str:
        mac = hmac.new(self._key, text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")
