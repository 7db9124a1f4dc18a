"""Authentication and scopes against a real ingest app: API keys (hashed, revocable, expiring)
and JWTs (pinned algorithm, exp/iss/aud), a declared scope on every route, 401 and 403."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from taskstream.services.cli import main as cli_main
from taskstream.services.ingest import auth, state
from taskstream.services.ingest.app import build_app
from taskstream.services.ingest.publisher import Publisher
from taskstream.services.ingest.service import check
from taskstream.shared import config as config_mod
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.domain.access import PUBLIC, SCOPES
from taskstream.shared.errors import ConfigError
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.conftest import counter_value
from tests.helpers import api_client, query

Client = TestClient[Any, Any]
SECRET = "s" * 40
ISSUER = "https://issuer.example"
AUDIENCE = "taskstream"


def token(claims: dict[str, Any] | None = None, *, key: Any = SECRET, alg: str = "HS256",
          headers: dict[str, Any] | None = None) -> str:  # fmt: skip
    body = {"tenant": "acme", "scope": "tasks:write tasks:read", "iss": ISSUER,
            "aud": AUDIENCE, "exp": int(time.time()) + 300, "sub": "someone"}  # fmt: skip
    body.update(claims or {})
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=alg,
                      headers=headers)  # fmt: skip


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture
def auth_config(config: Config) -> Config:
    return config_mod.replace(
        config,
        auth_mode="keys,jwt",
        jwt_secret=SECRET,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        api_key_cache_ms=0,
    )


@pytest.fixture
async def client(
    auth_config: Config, db: Database, streams: Streams, metrics: Metrics
) -> AsyncIterator[Client]:
    async with api_client(auth_config, db, streams, metrics) as (c, _):
        yield c


async def make_key(db: Database, tenant: str, *scopes: str, **kw: Any) -> str:
    created = await db.create_api_key(tenant, list(scopes), **kw)
    assert created is not None
    return created.key


def path_of(canonical: str) -> str:
    path = canonical.replace("{id}", str(uuid.uuid4())).replace("{priority}", "default")
    return path.replace("{name}", "acme").replace("{kind}", "type")


def test_every_route_of_the_app_declares_a_scope(
    auth_config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    app = build_app(auth_config, db, streams, metrics, Publisher(streams, metrics, retry_ms=100))
    routes = [(r.method, r.resource.canonical) for r in app.router.routes() if r.resource]
    assert len(routes) >= 20
    assert auth.undeclared(app) == []
    for method, path in routes:
        assert auth.scope_of(method, path) in (*SCOPES, PUBLIC, "metrics", auth.CONSOLE)


def test_a_route_without_a_scope_is_found_by_the_walk(
    auth_config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    app = build_app(auth_config, db, streams, metrics, Publisher(streams, metrics, retry_ms=100))

    async def handler(request: Any) -> Any:
        raise AssertionError("never called")

    app.router.add_get("/v1/secret", handler)
    assert auth.undeclared(app) == ["GET /v1/secret"]


async def test_a_route_without_a_scope_is_refused_to_everyone(
    auth_config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    publisher = Publisher(streams, metrics, retry_ms=100)
    app = build_app(auth_config, db, streams, metrics, publisher)
    called = []

    async def handler(request: Any) -> Any:
        called.append(1)

    app.router.add_get("/v1/secret", handler)
    admin = await make_key(db, "acme", "admin")
    from aiohttp.test_utils import TestServer

    async with TestClient(TestServer(app)) as c:
        resp = await c.get("/v1/secret", headers=bearer(admin))
        assert resp.status == 403
    assert called == []


async def test_every_protected_route_without_a_token_is_401(client: Client) -> None:
    checked = 0
    for r in client.app.router.routes():
        if r.resource is None or r.method == "HEAD":
            continue
        if auth.scope_of(r.method, r.resource.canonical) in (PUBLIC, "metrics", auth.CONSOLE):
            continue  # the console signs in by its own session (tests/browser, test_console)
        resp = await client.request(r.method, path_of(r.resource.canonical), json={})
        assert resp.status == 401, f"{r.method} {r.resource.canonical}: {resp.status}"
        body = await resp.json()
        assert body["error"]["code"] == "unauthorized"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        checked += 1
    assert checked >= 15


async def test_public_routes_need_no_token(client: Client) -> None:
    for path in ("/healthz", "/openapi.json", "/metrics"):
        assert (await client.get(path)).status == 200, path
    assert (await client.get("/readyz")).status in (200, 503)


@pytest.mark.parametrize(
    "value",
    ["", "Basic dXNlcjpwYXNz", "Bearer", "Bearer ts_live_" + "x" * 43, "Bearer not-a-jwt"],
    ids=["empty", "basic", "no-token", "unknown-key", "garbage"],
)
async def test_a_bad_authorization_header_is_401(client: Client, value: str) -> None:
    resp = await client.get("/v1/tasks", headers={"Authorization": value} if value else {})
    assert resp.status == 401


async def test_an_api_key_works_until_it_is_revoked(client: Client, db: Database) -> None:
    key = await make_key(db, "acme", "tasks:write", "tasks:read")
    resp = await client.post("/v1/tasks", json={"type": "t"}, headers=bearer(key))
    assert resp.status == 201
    (stored,) = await db.list_api_keys("acme")
    await db.revoke_api_key(stored.id)
    resp = await client.get("/v1/tasks", headers=bearer(key))
    assert resp.status == 401
    assert "revoked" in (await resp.json())["error"]["message"]


async def test_a_revocation_through_the_api_takes_effect_at_once_despite_the_cache(
    auth_config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    cached = config_mod.replace(auth_config, api_key_cache_ms=60_000)
    admin = await make_key(db, "acme", "admin")
    user = await make_key(db, "acme", "tasks:read")
    async with api_client(cached, db, streams, metrics) as (c, _):
        assert (await c.get("/v1/tasks", headers=bearer(user))).status == 200
        (row,) = [k for k in await db.list_api_keys("acme") if "tasks:read" in k.scopes]
        resp = await c.delete(f"/v1/keys/{row.id}", headers=bearer(admin))
        assert resp.status == 200
        assert (await c.get("/v1/tasks", headers=bearer(user))).status == 401


async def test_a_revoked_key_works_at_most_the_cache_time_elsewhere(
    auth_config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    cached = config_mod.replace(auth_config, api_key_cache_ms=300)
    user = await make_key(db, "acme", "tasks:read")
    async with api_client(cached, db, streams, metrics) as (c, _):
        assert (await c.get("/v1/tasks", headers=bearer(user))).status == 200
        (row,) = await db.list_api_keys("acme")
        await db.revoke_api_key(row.id)  # as the CLI or another ingest would
        started = time.monotonic()
        while (await c.get("/v1/tasks", headers=bearer(user))).status == 200:
            assert time.monotonic() - started < 0.3 + 0.5
            await asyncio.sleep(0.02)


async def test_an_expired_key_is_401(client: Client, db: Database) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    key = await make_key(db, "acme", "tasks:read", expires_at=past)
    resp = await client.get("/v1/tasks", headers=bearer(key))
    assert resp.status == 401
    assert "expired" in (await resp.json())["error"]["message"]


async def test_keys_are_stored_only_as_their_hash(
    client: Client, db: Database, auth_config: Config
) -> None:
    admin = await make_key(db, "acme", "admin")
    resp = await client.post(
        "/v1/keys", json={"scopes": ["tasks:write"], "name": "ci"}, headers=bearer(admin)
    )
    assert resp.status == 201
    created = await resp.json()
    key = created["key"]
    assert key.startswith("ts_live_") and len(key) >= 40
    rows = await query(auth_config.stores.database_url, "SELECT * FROM api_keys")
    assert len(rows) == 2
    for row in rows:
        for value in dict(row).values():
            assert key not in str(value)
            assert admin not in str(value)
    hashes = {bytes(r["key_hash"]) for r in rows}
    assert hashlib.sha256(key.encode()).digest() in hashes
    assert hashlib.sha256(admin.encode()).digest() in hashes
    listed = await client.get("/v1/keys", headers=bearer(admin))
    assert key not in await listed.text()


async def test_a_key_without_the_scope_is_403(client: Client, db: Database) -> None:
    reader = await make_key(db, "acme", "tasks:read")
    resp = await client.post("/v1/tasks", json={"type": "t"}, headers=bearer(reader))
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "forbidden"
    for path in ("/v1/queues", "/v1/dlq", "/v1/keys"):
        assert (await client.get(path, headers=bearer(reader))).status == 403, path


async def test_last_used_is_written_at_most_once_per_touch_interval(
    client: Client, db: Database
) -> None:
    key = await make_key(db, "acme", "tasks:read")
    for _ in range(5):
        assert (await client.get("/v1/tasks", headers=bearer(key))).status == 200
    for _ in range(100):
        (row,) = await db.list_api_keys("acme")
        if row.last_used_at is not None:
            break
        await asyncio.sleep(0.02)
    assert row.last_used_at is not None
    first = row.last_used_at
    assert (await client.get("/v1/tasks", headers=bearer(key))).status == 200
    await asyncio.sleep(0.1)
    (row,) = await db.list_api_keys("acme")
    assert row.last_used_at == first  # within API_KEY_TOUCH_MS: not written again


async def test_a_valid_jwt_acts_as_its_tenant(client: Client) -> None:
    resp = await client.post("/v1/tasks", json={"type": "t"}, headers=bearer(token()))
    assert resp.status == 201, await resp.text()
    listed = await client.get("/v1/tasks", headers=bearer(token()))
    assert len((await listed.json())["tasks"]) == 1


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"exp": None}, "no exp"),
        ({"aud": "someone-else"}, "wrong audience"),
        ({"aud": None}, "no audience"),
        ({"iss": "https://evil.example"}, "wrong issuer"),
        ({"tenant": None}, "no tenant"),
        ({"tenant": "Not A Tenant"}, "bad tenant"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
async def test_a_jwt_that_does_not_check_out_is_401(
    client: Client, claims: dict[str, Any], why: str
) -> None:
    resp = await client.get("/v1/tasks", headers=bearer(token(claims)))
    assert resp.status == 401, why


async def test_a_jwt_signed_with_another_secret_is_401(client: Client) -> None:
    resp = await client.get("/v1/tasks", headers=bearer(token(key="t" * 40)))
    assert resp.status == 401


async def test_alg_none_is_401(client: Client) -> None:
    unsigned = jwt.encode(
        {"tenant": "acme", "scope": "admin", "exp": int(time.time()) + 60, "iss": ISSUER,
         "aud": AUDIENCE}, None, algorithm="none",  # type: ignore[arg-type]
    )  # fmt: skip
    resp = await client.get("/v1/tasks", headers=bearer(unsigned))
    assert resp.status == 401


async def test_a_jwt_without_the_scope_is_403(client: Client) -> None:
    resp = await client.get("/v1/queues", headers=bearer(token({"scope": "tasks:read"})))
    assert resp.status == 403
    scopes_as_list = token({"scope": ["ops:read"]})
    assert (await client.get("/v1/queues", headers=bearer(scopes_as_list))).status == 200


def _rsa() -> tuple[Any, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


async def test_rs256_with_a_public_key_and_the_hs_rs_confusion_is_401(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    private, public = _rsa()
    rs = config_mod.replace(config, auth_mode="jwt", jwt_algorithm="RS256", jwt_public_key=public)
    async with api_client(rs, db, streams, metrics) as (c, _):
        good = token(key=private, alg="RS256")
        assert (await c.get("/v1/tasks", headers=bearer(good))).status == 200
        # The confusion: an HS256 token whose "secret" is the public key everyone knows.
        import hmac as hmac_mod

        header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        claims = {"tenant": "acme", "scope": "admin", "exp": int(time.time()) + 60,
                  "iss": ISSUER, "aud": AUDIENCE}  # fmt: skip
        payload = jwt.utils.base64url_encode(json.dumps(claims).encode())
        signing = header + b"." + payload
        sig = hmac_mod.new(public.encode(), signing, hashlib.sha256).digest()
        forged = (signing + b"." + jwt.utils.base64url_encode(sig)).decode()
        assert (await c.get("/v1/tasks", headers=bearer(forged))).status == 401
        # ... and an HS256 token with any secret: the algorithm is pinned to RS256.
        assert (await c.get("/v1/tasks", headers=bearer(token()))).status == 401


async def test_es256_from_a_jwks_file_picks_the_key_by_kid(
    config: Config, db: Database, streams: Streams, metrics: Metrics, tmp_path: Path
) -> None:
    keys = {kid: ec.generate_private_key(ec.SECP256R1()) for kid in ("a", "b")}
    jwks: dict[str, list[Any]] = {"keys": []}
    for kid, private in keys.items():
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
        jwks["keys"].append({**jwk, "kid": kid, "use": "sig", "alg": "ES256"})
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    es = config_mod.replace(config, auth_mode="jwt", jwt_algorithm="ES256",
                            jwt_jwks_file=str(path))  # fmt: skip
    async with api_client(es, db, streams, metrics) as (c, _):
        for kid in ("a", "b"):
            good = token(key=keys[kid], alg="ES256", headers={"kid": kid})
            assert (await c.get("/v1/tasks", headers=bearer(good))).status == 200
        wrong = token(key=keys["a"], alg="ES256", headers={"kid": "b"})
        assert (await c.get("/v1/tasks", headers=bearer(wrong))).status == 401
        unknown = token(key=keys["a"], alg="ES256", headers={"kid": "zz"})
        assert (await c.get("/v1/tasks", headers=bearer(unknown))).status == 401


async def test_only_an_admin_may_act_for_another_tenant(client: Client, db: Database) -> None:
    user = await make_key(db, "acme", "tasks:write", "tasks:read")
    admin = await make_key(db, "ops", "admin")
    as_beta = {auth.TENANT_HEADER: "beta"}
    resp = await client.post("/v1/tasks", json={"type": "t"}, headers={**bearer(user), **as_beta})
    assert resp.status == 403
    resp = await client.post("/v1/tasks", json={"type": "t"}, headers={**bearer(admin), **as_beta})
    assert resp.status == 201
    rows = await query(client.app[state.CONFIG].stores.database_url, "SELECT * FROM tasks")
    assert len(rows) == 1


async def test_rejections_are_counted_by_reason(
    client: Client, db: Database, metric_reader: Any
) -> None:
    reader = await make_key(db, "acme", "tasks:read")
    await client.get("/v1/tasks")
    await client.post("/v1/tasks", json={"type": "t"}, headers=bearer(reader))
    assert counter_value(metric_reader, "requests_rejected", reason="unauthorized") == 1
    assert counter_value(metric_reader, "requests_rejected", reason="forbidden") == 1


def test_ingest_refuses_auth_off_on_a_public_address(config: Config) -> None:
    with pytest.raises(ConfigError, match="AUTH_MODE=off"):
        check(config_mod.replace(config, http_host="0.0.0.0"))
    check(config_mod.replace(config, http_host="127.0.0.1"))
    check(config_mod.replace(config, http_host="::1"))
    check(config_mod.replace(config, http_host="0.0.0.0", auth_allow_insecure=1))
    check(config_mod.replace(config, http_host="0.0.0.0", auth_mode="keys"))


def test_jwt_settings_that_cannot_work_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="JWT_SECRET"):
        config_mod.load({"AUTH_MODE": "jwt", "JWT_SECRET": "short"})
    with pytest.raises(ConfigError, match="RS256 needs"):
        config_mod.load({"AUTH_MODE": "jwt", "JWT_ALGORITHM": "RS256"})
    with pytest.raises(ConfigError, match="AUTH_MODE"):
        config_mod.load({"AUTH_MODE": "passwords"})
    with pytest.raises(ConfigError, match="JWT_ALGORITHM"):
        config_mod.load({"JWT_ALGORITHM": "none"})
    assert config_mod.auth_kinds(
        config_mod.load({"AUTH_MODE": "jwt,keys", "JWT_SECRET": SECRET}).access
    )


async def test_the_keys_cli_creates_lists_and_revokes(
    config: Config, db: Database, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("DATABASE_URL", config.stores.database_url)
    argv = ["keys", "create", "--tenant", "acme", "--scopes", "tasks:write,tasks:read",
            "--name", "ci", "--expires", "30d"]  # fmt: skip
    assert await asyncio.to_thread(cli_main.main, argv) == 0
    out = capsys.readouterr()
    key = out.out.strip()
    assert key.startswith("ts_live_") and "shown this once" in out.err
    stored = await db.api_key_by_hash(hashlib.sha256(key.encode()).digest())
    assert stored is not None
    assert stored.key.scopes == ["tasks:read", "tasks:write"]
    assert stored.key.expires_at is not None
    assert stored.key.expires_at > dt.datetime.now(dt.UTC) + dt.timedelta(days=29)
    assert await asyncio.to_thread(cli_main.main, ["keys", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["keys"]
    assert [k["name"] for k in listed] == ["ci"] and key not in json.dumps(listed)
    assert await asyncio.to_thread(cli_main.main, ["keys", "revoke", listed[0]["id"]]) == 0
    capsys.readouterr()
    assert await asyncio.to_thread(cli_main.main, ["keys", "list"]) == 0
    assert "ci" not in capsys.readouterr().out
    bad = ["keys", "create", "--tenant", "acme", "--scopes", "tasks:everything"]
    assert await asyncio.to_thread(cli_main.main, bad) == 2
    assert "unknown scope" in capsys.readouterr().err


async def test_metrics_need_ops_read_on_the_api_port_when_ingest_has_its_own_listener(
    auth_config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    own = config_mod.replace(auth_config, metrics_addr="127.0.0.1:0")
    reader = await make_key(db, "acme", "ops:read")
    async with api_client(own, db, streams, metrics) as (c, _):
        assert (await c.get("/metrics")).status == 401
        assert (await c.get("/metrics", headers=bearer(reader))).status == 200
        assert (await c.get("/healthz")).status == 200


def test_ingest_exits_2_naming_the_setting_with_auth_off_on_a_public_address(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from taskstream.services.ingest.__main__ import main as ingest_main

    monkeypatch.setenv("HTTP_HOST", "0.0.0.0")
    monkeypatch.setenv("AUTH_MODE", "off")
    monkeypatch.delenv("AUTH_ALLOW_INSECURE", raising=False)
    assert ingest_main([]) == 2
    assert "AUTH_MODE=off with HTTP_HOST=0.0.0.0" in capsys.readouterr().err


def test_a_checked_jwt_is_remembered_only_until_its_exp() -> None:
    from taskstream.services.ingest.credentials import JwtVerifier, Unauthorized

    access = config_mod.load({"AUTH_MODE": "jwt", "JWT_SECRET": SECRET}).access
    verifier = JwtVerifier(access)
    exp = int(time.time()) + 60
    good = jwt.encode({"tenant": "acme", "scope": "tasks:read", "exp": exp}, SECRET,
                      algorithm="HS256")  # fmt: skip
    calls = []
    check = verifier._verify

    def counted(token: str) -> Any:
        calls.append(token)
        return check(token)

    verifier._verify = counted  # type: ignore[method-assign]
    assert verifier.verify(good).tenant == "acme"
    assert verifier.verify(good, now=exp - 1).tenant == "acme"
    assert len(calls) == 1  # the second came from memory
    verifier.verify(good, now=exp)  # at its exp: checked again (and by PyJWT's own clock)
    assert len(calls) == 2
    with pytest.raises(Unauthorized):
        verifier.verify(good[:-2] + "xx")
