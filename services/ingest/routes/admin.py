"""Admin routes: API keys (create, list, revoke) and the tenants' limits (list, set). Every
one needs the ``admin`` scope; an admin acting for a tenant (``X-Taskstream-Tenant``) sees and
makes that tenant's keys only."""

from __future__ import annotations

import datetime as dt

import msgspec
from aiohttp import web

from taskstream.services.ingest import auth, params, state
from taskstream.services.ingest.errors import invalid, json_response, not_found
from taskstream.services.ingest.routes import ID, Route
from taskstream.services.ingest.validate import decode_body
from taskstream.shared.access_models import (
    KeyCreated,
    KeyList,
    KeyRequest,
    LimitList,
    LimitRequest,
    TenantList,
    TenantRequest,
)
from taskstream.shared.domain.access import CAP_KINDS, TenantLimits, valid_tenant
from taskstream.shared.models import TaskType


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


_TYPE = msgspec.json.Decoder(TaskType)


def _cap(request: web.Request) -> tuple[str, str]:
    kind, name = request.match_info["kind"], request.match_info["name"]
    if kind not in CAP_KINDS:
        raise invalid(400, "kind must be type or tenant", "kind")
    ok = valid_tenant(name) if kind == "tenant" else _valid_type(name)
    if not ok:
        raise invalid(400, f"not a {kind} name", "name")
    return kind, name


def _valid_type(name: str) -> bool:
    try:
        _TYPE.decode(msgspec.json.encode(name))
    except msgspec.ValidationError:
        return False
    return True


async def list_limits(request: web.Request) -> web.Response:
    return json_response(LimitList(limits=await state.db(request).concurrency_limits()))


async def set_limit(request: web.Request) -> web.Response:
    kind, name = _cap(request)
    body = decode_body(await request.read(), LimitRequest, ("max_running",))
    stored = await state.db(request).set_concurrency_limit(kind, name, body.max_running)
    return json_response(stored)


async def clear_limit(request: web.Request) -> web.Response:
    kind, name = _cap(request)
    cleared = await state.db(request).clear_concurrency_limit(kind, name)
    if cleared is None:
        raise not_found(f"no cap on {kind} {name}")
    return json_response(cleared)


ROUTES: list[Route] = [
    ("GET", "/v1/limits", list_limits),
    ("PUT", "/v1/limits/{kind}/{name}", set_limit),
    ("DELETE", "/v1/limits/{kind}/{name}", clear_limit),
    ("GET", "/v1/tenants", list_tenants),
    ("PUT", "/v1/tenants/{name}", set_tenant),
    ("GET", "/v1/keys", list_keys),
    ("POST", "/v1/keys", create_key),
    ("DELETE", "/v1/keys/{id:" + ID + "}", revoke_key),
]
