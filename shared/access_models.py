"""Wire models of the admin routes (keys, tenants, limits) and the CLI's ``--json`` output."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from taskstream.shared.domain.access import (
    TENANT_PATTERN,
    ApiKey,
    ConcurrencyLimit,
    TenantLimits,
)

Scope = Literal["tasks:write", "tasks:read", "ops:read", "ops:write", "admin"]
TenantName = Annotated[str, msgspec.Meta(pattern=TENANT_PATTERN)]
KeyName = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern="^[^\x00]+$")]
TEN_YEARS_S = 10 * 366 * 24 * 3600


class KeyRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /v1/keys``: the tenant (default: the caller's, or the one it acts
    for), its scopes, a name, and an optional lifetime in seconds."""

    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1, max_length=5)]
    tenant: TenantName | None = None
    name: KeyName | None = None
    expires_in_s: Annotated[int, msgspec.Meta(ge=1, le=TEN_YEARS_S)] | None = None


class KeyCreated(msgspec.Struct, frozen=True, kw_only=True):
    """The one answer that shows the key itself: keep it, it is not stored."""

    key: str
    api_key: ApiKey


class KeyList(msgspec.Struct, frozen=True, kw_only=True):
    keys: list[ApiKey]


class TenantRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of ``PUT /v1/tenants/{name}``: the tenant's limits, replacing what it had (an
    absent or null limit is no limit)."""

    rate_per_s: Annotated[float, msgspec.Meta(gt=0, le=1e9)] | None = None
    burst: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)] | None = None
    max_in_flight: Annotated[int, msgspec.Meta(ge=1, le=2**62)] | None = None
    max_payload_bytes: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)] | None = None
    weight: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1


class TenantList(msgspec.Struct, frozen=True, kw_only=True):
    tenants: list[TenantLimits]


class LimitRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of ``PUT /v1/limits/{kind}/{name}``."""

    max_running: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]


class LimitList(msgspec.Struct, frozen=True, kw_only=True):
    limits: list[ConcurrencyLimit]
