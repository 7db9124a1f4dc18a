"""Admin routes: API keys (create, list, revoke). Every one needs the ``admin`` scope; an
admin acting for a tenant (``X-Taskstream-Tenant``) sees and makes that tenant's keys only."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from taskstream.services.ingest import auth, params, state
from taskstream.services.ingest.errors import invalid, json_response, not_found
from taskstream.services.ingest.routes import ID, Route
from taskstream.services.ingest.validate import decode_body
from taskstream.shared.access_models import KeyCreated, KeyList, KeyRequest


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


ROUTES: list[Route] = [
    ("GET", "/v1/keys", list_keys),
    ("POST", "/v1/keys", create_key),
    ("DELETE", "/v1/keys/{id:" + ID + "}", revoke_key),
]
