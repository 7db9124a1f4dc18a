"""The queries of access and tenants (issue 13), one named constant each, with one line saying
what it does. A test prepares each against a migrated database (with ``shared.sql``'s)."""

# Store a new API key (its hash only); returns the stored row.
INSERT_API_KEY = """
INSERT INTO api_keys (id, tenant, scopes, name, prefix, key_hash, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING *
"""

# Store a key unless one with the same hash exists (the bootstrap key at every start).
ENSURE_API_KEY = """
INSERT INTO api_keys (id, tenant, scopes, name, prefix, key_hash, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (key_hash) DO NOTHING
RETURNING *
"""

# The key whose hash this is (authentication).
API_KEY_BY_HASH = "SELECT * FROM api_keys WHERE key_hash = $1"

# Keys, newest first, of one tenant ($1) or all (null); revoked ones only if $2.
LIST_API_KEYS = """
SELECT * FROM api_keys
WHERE ($1::text IS NULL OR tenant = $1) AND ($2 OR revoked_at IS NULL)
ORDER BY created_at DESC, id DESC
LIMIT $3
"""

# Revoke a key at once (of one tenant $2, or any: null); returns it, or nothing.
REVOKE_API_KEY = """
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)
RETURNING *
"""

# Note that keys were used (at most every API_KEY_TOUCH_MS per process).
TOUCH_API_KEYS = "UPDATE api_keys SET last_used_at = now() WHERE id = ANY($1::uuid[])"

# Set a tenant's limits (null: none); returns the row.
UPSERT_TENANT = """
INSERT INTO tenants (name, rate_per_s, burst, max_in_flight, max_payload_bytes, weight)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (name) DO UPDATE SET rate_per_s = excluded.rate_per_s, burst = excluded.burst,
    max_in_flight = excluded.max_in_flight, max_payload_bytes = excluded.max_payload_bytes,
    weight = excluded.weight, updated_at = now()
RETURNING *
"""

# Every tenant with limits, with its tasks in flight where they are counted.
LIST_TENANTS = """
SELECT t.*, u.in_flight FROM tenants t LEFT JOIN tenant_usage u ON u.tenant = t.name
WHERE $1::text IS NULL OR t.name = $1
ORDER BY t.name
"""

# Make sure a tenant has a counter row, lock it, and read it (a counted insert's first step).
LOCK_USAGE = """
INSERT INTO tenant_usage (tenant) VALUES ($1)
ON CONFLICT (tenant) DO UPDATE SET in_flight = tenant_usage.in_flight
RETURNING in_flight
"""

# Add tasks just inserted to their tenant's counter.
ADD_USAGE = "UPDATE tenant_usage SET in_flight = in_flight + $2 WHERE tenant = $1"

# A quota set on a tenant that had none: its tasks in flight now start counting (the trigger
# adds each to the counter as it is marked).
COUNT_IN_FLIGHT = """
UPDATE tasks SET counted = true
WHERE tenant = $1 AND NOT counted AND status IN ('scheduled', 'queued', 'running', 'retrying')
"""

# Make sure a tenant has a counter row (before its tasks are marked counted).
ENSURE_USAGE = "INSERT INTO tenant_usage (tenant) VALUES ($1) ON CONFLICT DO NOTHING"

ALL: dict[str, str] = {
    name: value for name, value in globals().items() if name.isupper() and name != "ALL"
}
