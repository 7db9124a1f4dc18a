"""The queries of access and tenants (issue 13), one named constant each, with one line saying
what it does. A test prepares each against a migrated database (with ``shared.sql``'s)."""

from taskstream.shared.sql import requeue_gone

_requeue_task = requeue_gone("t")
_requeue_gone = requeue_gone("g")

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

# Concurrency caps: every one (executors poll this), or one kind's.
CONCURRENCY_LIMITS = """
SELECT kind, name, max_running FROM concurrency_limits
WHERE $1::text IS NULL OR kind = $1
ORDER BY kind, name
"""

# Set a concurrency cap ($1 kind, $2 name, $3 most running at once).
SET_CONCURRENCY_LIMIT = """
INSERT INTO concurrency_limits (kind, name, max_running) VALUES ($1, $2, $3)
ON CONFLICT (kind, name) DO UPDATE SET max_running = excluded.max_running, updated_at = now()
RETURNING kind, name, max_running
"""

# Remove a concurrency cap; returns it.
CLEAR_CONCURRENCY_LIMIT = """
DELETE FROM concurrency_limits WHERE kind = $1 AND name = $2 RETURNING kind, name, max_running
"""

# Of these deliveries (ids $1, attempts $2), the tasks still queued at that attempt whose type
# is in $3 or tenant in $4 (the capped ones), with their type and tenant.
CAPPED_TASKS = """
SELECT t.id, t.type, t.tenant
FROM unnest($1::uuid[], $2::int[]) AS d(id, attempt)
JOIN tasks t ON t.id = d.id AND t.attempt = d.attempt
WHERE t.status = 'queued' AND (t.type = ANY($3::text[]) OR t.tenant = ANY($4::text[]))
"""

# Set delivered tasks aside to wait for a slot of a full cap (ids $1, attempts $2, the caps'
# kinds $3 and names $4): only those still queued at that attempt. Returns the ids set aside.
WAIT_FOR_SLOT = """
INSERT INTO limit_waits (task_id, attempt, priority, kind, name)
SELECT t.id, t.attempt, t.priority, w.kind, w.name
FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[]) AS w(id, attempt, kind, name)
JOIN tasks t ON t.id = w.id AND t.attempt = w.attempt
WHERE t.status = 'queued'
ON CONFLICT (task_id) DO UPDATE SET attempt = excluded.attempt, kind = excluded.kind,
    name = excluded.name, waited_at = now()
RETURNING task_id
"""

# The caps tasks are waiting on, with how many wait.
WAITING_CAPS = "SELECT kind, name, count(*) AS n FROM limit_waits GROUP BY kind, name"

# Release up to $3 tasks waiting on cap ($1 kind, $2 name), oldest first (rows another watcher
# holds skipped): delete their rows, stamp those still queued at that attempt with an outbox
# row; returns what to publish.
UNWAIT = f"""
WITH freed AS (
    SELECT task_id FROM limit_waits
    WHERE kind = $1 AND name = $2
    ORDER BY waited_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM limit_waits w USING freed f WHERE w.task_id = f.task_id
    RETURNING w.task_id, w.attempt
), {_requeue_task}
SELECT ready.*, (SELECT id FROM outboxed) AS outbox_id FROM ready
"""

# How many tenants there are: those with a key that still works, or with limits, and those
# waiting on a cap (the tenants gauge; a few small tables, no task read).
TENANT_COUNTS = """
SELECT
    (SELECT count(*) FROM (
        SELECT tenant FROM api_keys WHERE revoked_at IS NULL
        UNION SELECT name FROM tenants
    ) t) AS known,
    (SELECT count(*) FROM tenants) AS limited,
    (SELECT count(*) FROM concurrency_limits WHERE kind = 'tenant') AS capped
"""

# Hold back tasks beyond their tenant's fair share of the streams (ids $1, attempts $2,
# priorities $3, tenants $4, trace contexts $5): only those still queued at that attempt.
HOLD_FAIR = """
INSERT INTO fair_held (task_id, attempt, priority, tenant, trace_context)
SELECT t.id, t.attempt, t.priority, h.tenant, h.trace_context
FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[])
    AS h(id, attempt, priority, tenant, trace_context)
JOIN tasks t ON t.id = h.id AND t.attempt = h.attempt
WHERE t.status = 'queued'
ON CONFLICT (task_id) DO NOTHING
"""

# The tenants with tasks held back (a loose scan of the index: one probe per tenant).
HELD_TENANTS = """
WITH RECURSIVE t AS (
    (SELECT tenant FROM fair_held ORDER BY tenant LIMIT 1)
    UNION ALL
    SELECT (SELECT h.tenant FROM fair_held h WHERE h.tenant > t.tenant ORDER BY h.tenant LIMIT 1)
    FROM t WHERE t.tenant IS NOT NULL
)
SELECT tenant FROM t WHERE tenant IS NOT NULL
"""

# Release up to $2 of tenant $1's held tasks, oldest first (rows another watcher holds
# skipped): delete their rows, stamp those still queued at that attempt with an outbox row;
# returns what to publish.
RELEASE_FAIR = f"""
WITH freed AS (
    SELECT task_id FROM fair_held WHERE tenant = $1
    ORDER BY held_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM fair_held h USING freed f WHERE h.task_id = f.task_id
    RETURNING h.task_id, h.attempt, h.trace_context
), {_requeue_gone}
SELECT ready.*, (SELECT id FROM outboxed) AS outbox_id FROM ready
"""

ALL: dict[str, str] = {
    name: value for name, value in globals().items() if name.isupper() and name != "ALL"
}
