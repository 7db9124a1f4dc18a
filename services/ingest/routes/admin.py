"""Admin routes: API keys (create, list, revoke) and the tenants' limits (list, set). Every
one needs the ``admin`` scope; an admin acting for a tenant (``X-Taskstream-Tenant``) sees and
makes that tenant's keys only."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from taskstream.services.ingest import auth, params, state
from taskstream.services.ingest.errors import invalid, json_response, not_found
from taskstream.services.ingest.routes import ID, Route
from taskstream.services.ingest.validate import decode_body
from taskstream.shared.access_models import (
    KeyCreated,
    KeyList,
    KeyRequest,
    TenantList,
    TenantRequest,
)
from taskstream.shared.domain.access import TenantLimits, valid_tenant


async def create_key(request: web.Request) -> web.Response:
    body = decode_body(await request.read(), KeyRequest, ("expires_in_s",))
    who = auth.principal(request)
    tenant = body.tenant or who.tenant
    if who.acting and tenant != who.tenant:
        raise invalid(422, "acting for a tenant, keys are made for that tenant only", "tenant")
    expires = (
        None
        if body.expires_in_s is None
        else dt.datetime.now(dt.UTC) + dt.timedelta(seconds=body.expires_in_s)
    )
    created = await state.db(request).create_api_key(
        tenant, body.scopes, name=body.name, expires_at=expires
    )
    assert created is not None  # a fresh random key is never stored already
    return json_response(KeyCreated(key=created.key, api_key=created.api_key), 201)


async def list_keys(request: web.Request) -> web.Response:
    q = request.query
    revoked = params.choice(q, "revoked", ("true", "false")) == "true"
    keys = await state.db(request).list_api_keys(auth.principal(request).view, revoked=revoked)
    return json_response(KeyList(keys=keys))


async def revoke_key(request: web.Request) -> web.Response:
    key_id = params.task_id(request)
    revoked = await state.db(request).revoke_api_key(key_id, auth.principal(request).view)
    if revoked is None:
        raise not_found(f"no key {key_id}")
    keys = state.authenticator(request).keys
    if keys is not None:
        keys.forget()  # at once here; other ingests within API_KEY_CACHE_MS
    return json_response(revoked)


async def list_tenants(request: web.Request) -> web.Response:
    tenants = await state.db(request).tenants(auth.principal(request).view)
    return json_response(TenantList(tenants=tenants))


async def set_tenant(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if not valid_tenant(name):
        raise invalid(400, "not a tenant name (lower-case letters, digits, _ . -; 1-63)", "name")
    who = auth.principal(request)
    if who.acting and name != who.tenant:
        raise not_found(f"no tenant {name}")
    integers = ("burst", "max_in_flight", "max_payload_bytes", "weight")
    body = decode_body(await request.read(), TenantRequest, integers)
    limits = TenantLimits(name=name, **{f: getattr(body, f) for f in body.__struct_fields__})
    stored = await state.db(request).set_tenant(limits)
    state.limiter(request).forget()  # at once here; other ingests within LIMITS_CACHE_MS
    return json_response(stored)


ROUTES: list[Route] = [
    ("GET", "/v1/tenants", list_tenants),
    ("PUT", "/v1/tenants/{name}", set_tenant),
    ("GET", "/v1/keys", list_keys),
    ("POST", "/v1/keys", create_key),
    ("DELETE", "/v1/keys/{id:" + ID + "}", revoke_key),
]
