"""Who is asking, and what they may do: scopes, tenants, API keys and principals. No I/O.

Every request to ingest acts as a ``Principal``: a tenant and a set of scopes, from an API key
or a JWT (or, with auth off, the default tenant with every scope). ``admin`` satisfies every
scope and may act for another tenant. An API key is ``ts_live_`` and 43 characters of
``secrets.token_urlsafe(32)`` (256 random bits); only its SHA-256 is stored (``key_hash``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import uuid

import msgspec

TASKS_WRITE = "tasks:write"
TASKS_READ = "tasks:read"
OPS_READ = "ops:read"
OPS_WRITE = "ops:write"
ADMIN = "admin"
SCOPES: tuple[str, ...] = (TASKS_WRITE, TASKS_READ, OPS_READ, OPS_WRITE, ADMIN)

# A route anyone may call without a credential (health, readiness, the OpenAPI document).
PUBLIC = "public"

DEFAULT_TENANT = "default"
TENANT_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
_TENANT = re.compile(TENANT_PATTERN)

KEY_PREFIX = "ts_live_"
_KEY = re.compile(r"^ts_live_[A-Za-z0-9_-]{32,128}$")
SHOWN_PREFIX = len(KEY_PREFIX) + 6  # how much of a key listings show (never enough to use)


def valid_tenant(name: str) -> bool:
    """A tenant name: lower-case letters, digits, ``_ . -``, 1-63 characters."""
    return _TENANT.match(name) is not None


def parse_scopes(text: str) -> frozenset[str]:
    """``tasks:write,tasks:read`` (commas or spaces) → the scopes; ``ValueError`` naming an
    unknown one."""
    scopes = frozenset(s for s in re.split(r"[,\s]+", text.strip()) if s)
    unknown = sorted(scopes - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r} (known: {', '.join(SCOPES)})")
    if not scopes:
        raise ValueError("give at least one scope")
    return scopes


def new_key() -> str:
    """A fresh API key: shown once, stored only as its hash."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def looks_like_key(token: str) -> bool:
    return _KEY.match(token) is not None


def key_hash(token: str) -> bytes:
    """What is stored of a key. SHA-256, unsalted and fast, because a key carries 256 random
    bits: nothing can be guessed from the hash, so a slow password hash (bcrypt) would only
    cost every request its ~100 ms and make the hash unusable as a lookup index."""
    return hashlib.sha256(token.encode()).digest()


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """An API key as stored (never the key itself: ``prefix`` is its first characters)."""

    id: uuid.UUID
    tenant: str
    scopes: list[str]
    name: str | None
    prefix: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None


class StoredKey(msgspec.Struct, frozen=True, kw_only=True):
    """What authenticating a key needs: the stored record and its hash."""

    key: ApiKey
    key_hash: bytes


class CreatedKey(msgspec.Struct, frozen=True, kw_only=True):
    """A key just created: the only time the key itself is shown."""

    key: str
    api_key: ApiKey


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who a request acts as. ``tenant`` owns what it creates; ``acting`` is set when an
    admin named another tenant (``X-Taskstream-Tenant``)."""

    tenant: str
    scopes: frozenset[str]
    kind: str  # off | key | jwt
    subject: str = ""
    acting: bool = False

    @property
    def admin(self) -> bool:
        return ADMIN in self.scopes

    def allows(self, scope: str) -> bool:
        return scope == PUBLIC or scope in self.scopes or ADMIN in self.scopes

    @property
    def view(self) -> str | None:
        """The tenant whose objects reads, lists and changes see: the principal's own, or
        every tenant (``None``) for an admin not acting for one."""
        return None if self.admin and not self.acting else self.tenant

    def acting_for(self, tenant: str) -> Principal:
        return msgspec.structs.replace(self, tenant=tenant, acting=True)


# With auth off: one tenant, every scope.
OFF = Principal(tenant=DEFAULT_TENANT, scopes=frozenset(SCOPES), kind="off")


class TenantLimits(msgspec.Struct, frozen=True, kw_only=True):
    """A tenant's limits (None: no limit) and its share weight; ``in_flight`` is its tasks in
    flight where a quota counts them (listings only)."""

    name: str
    rate_per_s: float | None = None
    burst: int | None = None
    max_in_flight: int | None = None
    max_payload_bytes: int | None = None
    weight: int = 1
    in_flight: int | None = None

    @property
    def effective_burst(self) -> int:
        """The bucket's size: the burst, or one second's worth of the rate (at least 1)."""
        if self.burst is not None:
            return self.burst
        return max(1, round(self.rate_per_s or 1))


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|m|min|h|hour))?\s*$", re.I)
_PER_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600}
_SIZE = re.compile(r"^\s*(\d+)\s*(b|kb|kib|mb|mib)?\s*$", re.I)
_BYTES = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2}


def parse_rate(text: str) -> float:
    """Tasks per second from ``200/s``, ``1200/m``, ``10/h`` or ``200``; ``ValueError``."""
    m = _RATE.match(text)
    if m is None or float(m.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a rate (e.g. 200/s, 1200/m)")
    return float(m.group(1)) / _PER_S[(m.group(2) or "s").lower()]


def parse_size(text: str) -> int:
    """Bytes from ``256KiB``, ``1MiB``, ``64kB`` or ``1000``; ``ValueError``."""
    m = _SIZE.match(text)
    if m is None or int(m.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a size (e.g. 256KiB, 1MiB, 65536)")
    return int(m.group(1)) * _BYTES[(m.group(2) or "b").lower()]


CAP_KINDS = ("type", "tenant")


class ConcurrencyLimit(msgspec.Struct, frozen=True, kw_only=True):
    """At most ``max_running`` tasks of one type (``kind`` ``type``) or one tenant (``tenant``)
    running at once across every executor."""

    kind: str
    name: str
    max_running: int
