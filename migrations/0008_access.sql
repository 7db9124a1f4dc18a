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

-- The tenant owning each task: set at insert from the credential, never updated, so a claim
-- or completion still changes no indexed column (HOT updates stay HOT). Adding a column with a
-- constant default rewrites nothing. The index on (tenant, id) holds only tenants other than
-- `default`: with auth off (one tenant) no insert writes it; with tenants, an insert writes
-- one entry and no update ever touches it (neither column changes). It serves a tenant's
-- listing, newest first, as the primary key serves the default tenant's.
ALTER TABLE tasks ADD COLUMN tenant text NOT NULL DEFAULT 'default';
CREATE INDEX tasks_tenant_id ON tasks (tenant, id) WHERE tenant <> 'default';

-- A dead letter belongs to its task's tenant (copied when the task dies).
ALTER TABLE dead_letters ADD COLUMN tenant text NOT NULL DEFAULT 'default';
CREATE INDEX dead_letters_tenant ON dead_letters (tenant, dead_at DESC, task_id DESC)
    WHERE tenant <> 'default';

-- Idempotency keys are per tenant: two tenants may use the same key for different tasks.
ALTER TABLE idempotency_keys ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (tenant, key);
