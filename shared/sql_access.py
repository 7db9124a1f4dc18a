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

ALL: dict[str, str] = {
    name: value for name, value in globals().items() if name.isupper() and name != "ALL"
}
