-- Access (issue 13): API keys, and the tenant that owns every task, dead letter and
-- idempotency key.

-- API keys: only the SHA-256 of each key is kept (a key is 256 random bits, so its hash
-- reveals nothing and can be the lookup index). `prefix` is the key's first characters, for
-- listings. A revoked key stays listed (revoked_at) and never authenticates again.
CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    tenant       text NOT NULL,
    scopes       text[] NOT NULL,
    name         text,
    prefix       text NOT NULL,
    key_hash     bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    expires_at   timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant, created_at);
