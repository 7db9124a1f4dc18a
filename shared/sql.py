"""Every runtime query, one named constant each, with one line saying what it does.

Multi-row statements take parallel arrays through ``unnest`` so one round trip carries a
whole batch. Every state change is fenced: ``WHERE id = … AND attempt = … AND status = …``.
A test prepares each of these against a migrated database.
"""

# Insert new tasks, skipping those whose idempotency key is already taken; returns inserted rows.
# $16 the unique states, $17 the tenants, $18 whether the tasks count toward their tenant's
# in-flight quota (INSERT_TASKS_NOW: $16 the tenants, $17 the counting).
# Postgres's clock decides when a task is due (run_at, or now() + delay_ms) and so whether it
# is queued now or scheduled (with a due row).
INSERT_TASKS = """
WITH input AS (
    SELECT * FROM unnest(
        $1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int[], $6::int[],
        $7::int[], $8::int[], $9::int[], $10::text[], $11::bytea[], $12::timestamptz[],
        $13::text[], $14::bigint[], $16::int[], $17::text[]
    ) WITH ORDINALITY AS i(id, type, priority, payload, max_attempts, retry_base_ms,
        retry_max_ms, retry_jitter_ms, timeout_ms, idempotency_key, request_hash, run_at,
        trace_context, delay_ms, unique_states, tenant, n)
), timed AS (
    SELECT *, coalesce(run_at, now() + coalesce(delay_ms, 0) * interval '1 millisecond')
        AS due_at
    FROM input
), keys AS (
    -- One row per key (a batch may repeat one: the first takes it, the rest find it).
    INSERT INTO idempotency_keys (tenant, key, task_id, request_hash)
    SELECT DISTINCT ON (tenant, idempotency_key) tenant, idempotency_key, id, request_hash
    FROM input
    WHERE idempotency_key IS NOT NULL
    ORDER BY tenant, idempotency_key, n
    -- A key older than the TTL ($15 ms) is free again: it now names this task.
    ON CONFLICT (tenant, key) DO UPDATE
        SET task_id = excluded.task_id, request_hash = excluded.request_hash, created_at = now()
        WHERE idempotency_keys.created_at < now() - $15 * interval '1 millisecond'
    RETURNING task_id
), inserted AS (
    INSERT INTO tasks (id, type, priority, payload, status, max_attempts, retry_base_ms,
        retry_max_ms, retry_jitter_ms, timeout_ms, idempotency_key, run_at, queued_at,
        trace_context, unique_states, tenant, counted)
    SELECT id, type, priority, payload,
        CASE WHEN due_at > now() THEN 'scheduled' ELSE 'queued' END,
        max_attempts, retry_base_ms, retry_max_ms, retry_jitter_ms, timeout_ms,
        idempotency_key, greatest(due_at, now()),
        CASE WHEN due_at > now() THEN NULL ELSE now() END, trace_context, unique_states,
        tenant, $18
    FROM timed
    WHERE idempotency_key IS NULL OR id IN (SELECT task_id FROM keys)
    ORDER BY n
    RETURNING id, status, run_at, created_at, updated_at, queued_at, priority
), delayed AS (
    INSERT INTO due (bucket, due_at, task_id, attempt, priority, kind)
    SELECT date_trunc('hour', run_at, 'UTC'), run_at, id, 1, priority, 'delayed'
    FROM inserted WHERE status = 'scheduled'
), outboxed AS (
    INSERT INTO outbox (task_ids)
    SELECT array_agg(id) FROM inserted WHERE status = 'queued' HAVING count(*) > 0
    RETURNING id
)
SELECT id, status, run_at, created_at, updated_at, queued_at,
    (SELECT id FROM outboxed) AS outbox_id
FROM inserted
"""

# INSERT_TASKS for a group in which no task asks for a time: no due-table statement (whose
# trigger would run for nothing) on the common path.
INSERT_TASKS_NOW = """
WITH input AS (
    SELECT * FROM unnest(
        $1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int[], $6::int[],
        $7::int[], $8::int[], $9::int[], $10::text[], $11::bytea[], $12::timestamptz[],
        $13::text[], $14::bigint[], $16::text[]
    ) WITH ORDINALITY AS i(id, type, priority, payload, max_attempts, retry_base_ms,
        retry_max_ms, retry_jitter_ms, timeout_ms, idempotency_key, request_hash, run_at,
        trace_context, delay_ms, tenant, n)
), timed AS (
    SELECT *, coalesce(run_at, now() + coalesce(delay_ms, 0) * interval '1 millisecond')
        AS due_at
    FROM input
), keys AS (
    -- One row per key (a batch may repeat one: the first takes it, the rest find it).
    INSERT INTO idempotency_keys (tenant, key, task_id, request_hash)
    SELECT DISTINCT ON (tenant, idempotency_key) tenant, idempotency_key, id, request_hash
    FROM input
    WHERE idempotency_key IS NOT NULL
    ORDER BY tenant, idempotency_key, n
    -- A key older than the TTL ($15 ms) is free again: it now names this task.
    ON CONFLICT (tenant, key) DO UPDATE
        SET task_id = excluded.task_id, request_hash = excluded.request_hash, created_at = now()
        WHERE idempotency_keys.created_at < now() - $15 * interval '1 millisecond'
    RETURNING task_id
), inserted AS (
    INSERT INTO tasks (id, type, priority, payload, status, max_attempts, retry_base_ms,
        retry_max_ms, retry_jitter_ms, timeout_ms, idempotency_key, run_at, queued_at,
        trace_context, tenant, counted)
    SELECT id, type, priority, payload,
        CASE WHEN due_at > now() THEN 'scheduled' ELSE 'queued' END,
        max_attempts, retry_base_ms, retry_max_ms, retry_jitter_ms, timeout_ms,
        idempotency_key, greatest(due_at, now()),
        CASE WHEN due_at > now() THEN NULL ELSE now() END, trace_context, tenant, $17
    FROM timed
    WHERE idempotency_key IS NULL OR id IN (SELECT task_id FROM keys)
    ORDER BY n
    RETURNING id, status, run_at, created_at, updated_at, queued_at, priority
), outboxed AS (
    INSERT INTO outbox (task_ids)
    SELECT array_agg(id) FROM inserted WHERE status = 'queued' HAVING count(*) > 0
    RETURNING id
)
SELECT id, status, run_at, created_at, updated_at, queued_at,
    (SELECT id FROM outboxed) AS outbox_id
FROM inserted
"""

# The commonest group, inserted for the least: no task asks for a time or carries a key, and
# their attempts, backoff, timeout, trace context, tenant and counting are the same (scalars
# $5..$12 instead of arrays: an array costs the client per element). All queued now; returns
# one row: the ids, the statement's now() (every row's created, updated, queued and run time)
# and the outbox row.
INSERT_TASKS_PLAIN = """
WITH inserted AS (
    INSERT INTO tasks (id, type, priority, payload, status, max_attempts, retry_base_ms,
        retry_max_ms, retry_jitter_ms, timeout_ms, run_at, queued_at, trace_context, tenant,
        counted)
    SELECT i.id, i.type, i.priority, i.payload, 'queued', $5, $6, $7, $8, $9, now(), now(), $10,
        $11, $12
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[]) AS i(id, type, priority, payload)
    RETURNING id
), outboxed AS (
    INSERT INTO outbox (task_ids) SELECT array_agg(id) FROM inserted RETURNING id
)
SELECT (SELECT array_agg(id) FROM inserted) AS ids, now() AS at,
    (SELECT id FROM outboxed) AS outbox_id
"""

# Look up idempotency keys of one tenant ($1): the task each names and the digest of the
# request that took it.
SELECT_IDEMPOTENCY_KEYS = """
SELECT key, task_id, request_hash FROM idempotency_keys
WHERE tenant = $1 AND key = ANY($2::text[])
"""

# One task by id.
SELECT_TASK = "SELECT * FROM tasks WHERE id = $1"

# One task by id if it is tenant $2's (null: anyone's).
SELECT_TASK_OF = "SELECT * FROM tasks WHERE id = $1 AND ($2::text IS NULL OR tenant = $2)"

# Several tasks by id.
SELECT_TASKS = "SELECT * FROM tasks WHERE id = ANY($1::uuid[])"

# Those of these tasks that have ended (succeeded, dead or cancelled): what ingest's waiters
# are woken with, one query for every waiter a notification concerns.
SELECT_FINISHED_TASKS = """
SELECT * FROM tasks
WHERE id = ANY($1::uuid[]) AND status IN ('succeeded', 'dead', 'cancelled')
"""

# Take unique identities for new tasks ($1 hashes, $2 task ids, $3 periods in ms, null: none),
# one per hash, the batch's first asker getting it, in hash order (concurrent batches lock
# their rows in one order): a new row, or a free one taken over (its task left its unique
# states and its period is over). Concurrent inserters of one hash are settled by the primary
# key: the second waits for the first to commit, then finds its row held. Returns the ids of
# the tasks that got theirs.
CLAIM_UNIQUE = """
INSERT INTO unique_claims (hash, task_id, until)
SELECT DISTINCT ON (hash) hash, task_id, now() + for_ms * interval '1 millisecond'
FROM unnest($1::bytea[], $2::uuid[], $3::bigint[]) WITH ORDINALITY AS c(hash, task_id, for_ms, n)
ORDER BY hash, n
ON CONFLICT (hash) DO UPDATE
    SET task_id = excluded.task_id, held = true, until = excluded.until, created_at = now()
    WHERE NOT unique_claims.held
        AND (unique_claims.until IS NULL OR unique_claims.until <= now())
RETURNING task_id
"""

# Give back the identities CLAIM_UNIQUE took for tasks then not inserted (their idempotency
# key was taken), in the same transaction.
DROP_UNIQUE_CLAIMS = "DELETE FROM unique_claims WHERE task_id = ANY($1::uuid[])"

# The tasks holding these unique identities (what a duplicate is answered with).
SELECT_UNIQUE_HOLDERS = """
SELECT c.hash AS unique_hash, t.*
FROM unique_claims c JOIN tasks t ON t.id = c.task_id
WHERE c.hash = ANY($1::bytea[])
"""

# Transactional enqueue (taskstream.enqueue): one task inserted through the application's own
# connection, inside its transaction; the same rules as INSERT_TASKS (Postgres's clock, the
# idempotency key taken or found, $15 its TTL in ms; $16 the unique states). A queued task gets
# an outbox row of its own marked 'enqueue' and a notification, both delivered only if the
# application commits: the watcher publishes the row at once (services/watcher/outbox.py).
# Parameters are typed text where the application's connection may carry its own codecs.
ENQUEUE_TASK = """
WITH input AS (
    SELECT $1::uuid AS id, $2::text AS type, $3::text AS priority, $4::text::jsonb AS payload,
        $5::int AS max_attempts, $6::int AS retry_base_ms, $7::int AS retry_max_ms,
        $8::int AS retry_jitter_ms, $9::int AS timeout_ms, $10::text AS idempotency_key,
        $11::bytea AS request_hash,
        coalesce($12::timestamptz, now() + coalesce($13::bigint, 0) * interval '1 millisecond')
            AS due_at,
        $14::text AS trace_context, $16::int AS unique_states
), keys AS (
    -- The application's own enqueue is the default tenant's.
    INSERT INTO idempotency_keys (key, task_id, request_hash)
    SELECT idempotency_key, id, request_hash FROM input WHERE idempotency_key IS NOT NULL
    ON CONFLICT (tenant, key) DO UPDATE
        SET task_id = excluded.task_id, request_hash = excluded.request_hash, created_at = now()
        WHERE idempotency_keys.created_at < now() - $15 * interval '1 millisecond'
    RETURNING task_id
), inserted AS (
    INSERT INTO tasks (id, type, priority, payload, status, max_attempts, retry_base_ms,
        retry_max_ms, retry_jitter_ms, timeout_ms, idempotency_key, run_at, queued_at,
        trace_context, unique_states)
    SELECT id, type, priority, payload,
        CASE WHEN due_at > now() THEN 'scheduled' ELSE 'queued' END,
        max_attempts, retry_base_ms, retry_max_ms, retry_jitter_ms, timeout_ms,
        idempotency_key, greatest(due_at, now()),
        CASE WHEN due_at > now() THEN NULL ELSE now() END, trace_context, unique_states
    FROM input
    WHERE idempotency_key IS NULL OR id IN (SELECT task_id FROM keys)
    RETURNING id, status, priority, run_at
), delayed AS (
    INSERT INTO due (bucket, due_at, task_id, attempt, priority, kind)
    SELECT date_trunc('hour', run_at, 'UTC'), run_at, id, 1, priority, 'delayed'
    FROM inserted WHERE status = 'scheduled'
), outboxed AS (
    INSERT INTO outbox (task_ids, source)
    SELECT ARRAY[id], 'enqueue' FROM inserted WHERE status = 'queued'
    RETURNING id
), told AS (
    SELECT pg_notify('taskstream_outbox', '') FROM outboxed
)
SELECT i.id, i.status, (SELECT count(*) FROM told) AS told FROM inserted i
"""

# The id and status of one task (what enqueue answers with for a task it did not create).
SELECT_TASK_STATUS = "SELECT id, status FROM tasks WHERE id = $1"

# A page of tasks, newest first (ids are time-ordered), filtered; the cursor is the last id seen,
# $6 the smallest id of the oldest creation time wanted (a time range is a range of the key).
LIST_TASKS = """
SELECT * FROM tasks
WHERE ($1::text IS NULL OR status = $1)
  AND ($2::text IS NULL OR type = $2)
  AND ($3::text IS NULL OR priority = $3)
  AND ($4::uuid IS NULL OR id < $4)
  AND ($6::text IS NULL OR tenant = $6)
  AND ($7::uuid IS NULL OR id >= $7)
ORDER BY id DESC
LIMIT $5
"""

# The console's filtered page: LIST_TASKS's filters applied to at most $8 tasks of the key range
# (of tenant $6 when given), newest first, so a filter that matches rarely or never costs a
# bounded walk, not the table. The inner LIMIT bounds the walk; the outer one stops it as soon
# as the page is full.
LIST_TASKS_BOUNDED = """
SELECT * FROM (
    SELECT * FROM tasks
    WHERE ($4::uuid IS NULL OR id < $4)
      AND ($7::uuid IS NULL OR id >= $7)
      AND ($6::text IS NULL OR tenant = $6)
    ORDER BY id DESC
    LIMIT $8
) AS walked
WHERE ($1::text IS NULL OR status = $1)
  AND ($2::text IS NULL OR type = $2)
  AND ($3::text IS NULL OR priority = $3)
ORDER BY id DESC
LIMIT $5
"""

# LIST_TASKS_BOUNDED of one tenant other than the default ($6), walking its (tenant, id) index.
LIST_TASKS_BOUNDED_OF_TENANT = """
SELECT * FROM (
    SELECT * FROM tasks
    WHERE tenant = $6 AND tenant <> 'default'
      AND ($4::uuid IS NULL OR id < $4)
      AND ($7::uuid IS NULL OR id >= $7)
    ORDER BY tenant DESC, id DESC
    LIMIT $8
) AS walked
WHERE ($1::text IS NULL OR status = $1)
  AND ($2::text IS NULL OR type = $2)
  AND ($3::text IS NULL OR priority = $3)
ORDER BY id DESC
LIMIT $5
"""

# The last id such a walk looked at, when it looked at all $4 (none when the range ended
# first): where a short page goes on from. Reads the primary key only.
TASKS_WALK_END = """
SELECT id FROM tasks
WHERE ($1::uuid IS NULL OR id < $1)
  AND ($2::uuid IS NULL OR id >= $2)
  AND ($3::text IS NULL OR tenant = $3)
ORDER BY id DESC
OFFSET $4 - 1
LIMIT 1
"""

# TASKS_WALK_END of one tenant other than the default, on its (tenant, id) index.
TASKS_WALK_END_OF_TENANT = """
SELECT id FROM tasks
WHERE tenant = $3 AND tenant <> 'default'
  AND ($1::uuid IS NULL OR id < $1)
  AND ($2::uuid IS NULL OR id >= $2)
ORDER BY tenant DESC, id DESC
OFFSET $4 - 1
LIMIT 1
"""

# The task an idempotency key names while the key is held, of tenant $2 (any tenant's, the
# newest, when null: an admin's lookup).
TASK_OF_IDEMPOTENCY_KEY = """
SELECT task_id FROM idempotency_keys
WHERE key = $1 AND ($2::text IS NULL OR tenant = $2)
ORDER BY created_at DESC
LIMIT 1
"""

# LIST_TASKS of one tenant other than the default ($6), through its (tenant, id) index (the
# index's own condition is written out so the planner may use it).
LIST_TASKS_OF_TENANT = """
SELECT * FROM tasks
WHERE tenant = $6 AND tenant <> 'default'
  AND ($1::text IS NULL OR status = $1)
  AND ($2::text IS NULL OR type = $2)
  AND ($3::text IS NULL OR priority = $3)
  AND ($4::uuid IS NULL OR id < $4)
  AND ($7::uuid IS NULL OR id >= $7)
ORDER BY tenant DESC, id DESC
LIMIT $5
"""


# The tail of every statement that ends tasks (CTE `done`, returning their ids): one
# notification on commit for ingest's waiters (GET /v1/tasks/{id}?wait=), naming up to 200 of
# the tasks (a payload holds at most 8000 bytes), or "*" when more ended (look at every
# waiter). Only the first 201 rows are read for it. See shared/db/listen.py.
def requeue_gone(trace_from: str = "t") -> str:
    """The tail of a statement whose ``gone`` CTE (task_id, attempt) took tasks out of a place
    they waited in (parked, waiting for a slot, held for a fair share): those still queued at
    that attempt are stamped and named by one outbox row (``ready``, ``outboxed``), so the
    repair does not take their new entries for lost ones. ``trace_from``: ``t`` (the task) or
    ``g`` (``gone``) holds the trace context."""
    return _REQUEUE_GONE.replace("{src}", trace_from)


_REQUEUE_GONE = """ready AS (
    UPDATE tasks t SET updated_at = now()
    FROM gone g
    WHERE t.id = g.task_id AND t.attempt = g.attempt AND t.status = 'queued'
    RETURNING t.id, t.attempt, t.priority, {src}.trace_context
), outboxed AS (
    INSERT INTO outbox (task_ids)
    SELECT array_agg(id) FROM ready HAVING count(*) > 0
    RETURNING id
)"""


_TOLD = """told AS (
    SELECT pg_notify('taskstream_done',
        CASE WHEN count(*) > 200 THEN '*' ELSE string_agg(id::text, ',') END)
    FROM (SELECT id FROM done LIMIT 201) AS d
    HAVING count(*) > 0
)"""

# Release the unique identities of tasks in `done` that just left their unique states (bit
# {bit} of `unique_states`: the status they took); a task without one has null states.
_RELEASE = """released AS (
    UPDATE unique_claims u SET held = false
    FROM done d
    WHERE u.task_id = d.id AND u.held AND d.unique_states & {bit} = 0
)"""


# Lock a task's due rows first (a cancel's first statement): the watcher's move locks due rows,
# then task rows, so a cancel that locked the task row first and then waited for its due row
# could deadlock with it. Taking the same order, one simply waits for the other.
LOCK_DUE_OF_TASK = "SELECT 1 FROM due WHERE task_id = $1 FOR UPDATE"

# Cancel a task of tenant $2 (null: anyone's) that has not started (scheduled, queued, retrying,
# or a waiting workflow step); drops its due row, releases its unique identity, tells the
# waiters.
CANCEL_TASK = f"""
WITH done AS (
    UPDATE tasks SET status = 'cancelled', updated_at = now(), finished_at = now()
    WHERE id = $1 AND status IN ('scheduled', 'queued', 'retrying', 'waiting')
        AND ($2::text IS NULL OR tenant = $2)
    RETURNING *
), undue AS (
    DELETE FROM due WHERE task_id IN (SELECT id FROM done)
), {_RELEASE.format(bit=64)}, {_TOLD}
SELECT done.* FROM done, (SELECT count(*) FROM told) AS n
"""

# Claim delivered entries: queued → running, fenced by attempt; returns what handlers need.
CLAIM = """
UPDATE tasks t
SET status = 'running', started_at = now(), updated_at = now(), consumer = $3,
    entry_id = c.entry_id
FROM unnest($1::uuid[], $2::int[], $4::text[]) AS c(id, attempt, entry_id)
WHERE t.id = c.id AND t.attempt = c.attempt AND t.status = 'queued'
RETURNING t.id, t.attempt, t.type, t.priority, t.payload::text AS payload, t.timeout_ms,
    t.max_attempts, t.first_attempt, t.retry_base_ms, t.retry_max_ms, t.retry_jitter_ms,
    t.queued_at, t.started_at, t.unique_states, t.workflow_id
"""

# Take back this consumer's own entries after a restart (same stable name): they may be
# queued (released at shutdown) or running (the previous process died or was cut short).
CLAIM_OWN = """
UPDATE tasks t
SET status = 'running', started_at = now(), updated_at = now(), consumer = $3,
    entry_id = c.entry_id
FROM unnest($1::uuid[], $2::int[], $4::text[]) AS c(id, attempt, entry_id)
WHERE t.id = c.id AND t.attempt = c.attempt
  AND (t.status = 'queued' OR (t.status = 'running' AND t.consumer = $3))
RETURNING t.id, t.attempt, t.type, t.priority, t.payload::text AS payload, t.timeout_ms,
    t.max_attempts, t.first_attempt, t.retry_base_ms, t.retry_max_ms, t.retry_jitter_ms,
    t.queued_at, t.started_at, t.unique_states, t.workflow_id
"""

# Put claimed but never started tasks back to queued (executor shutdown), fenced.
RELEASE = """
WITH released AS (
    UPDATE tasks t SET status = 'queued', started_at = NULL, queued_at = now(),
        updated_at = now(), consumer = NULL, entry_id = NULL
    FROM unnest($1::uuid[], $2::int[]) AS c(id, attempt)
    WHERE t.id = c.id AND t.attempt = c.attempt AND t.status = 'running' AND t.consumer = $3
    RETURNING t.id
), outboxed AS (
    INSERT INTO outbox (task_ids)
    SELECT array_agg(id) FROM released WHERE true HAVING count(*) > 0
    RETURNING id
)
SELECT released.id, (SELECT id FROM outboxed) AS outbox_id FROM released
"""

# Record successful attempts (fenced) whose handlers returned nothing, of tasks without a
# unique identity (the hot path: nothing more than the status); returns the ids recorded.
COMPLETE_SUCCEEDED = f"""
WITH done AS (
    UPDATE tasks t SET status = 'succeeded', finished_at = now(), updated_at = now()
    FROM unnest($1::uuid[], $2::int[]) AS c(id, attempt)
    WHERE t.id = c.id AND t.attempt = c.attempt AND t.status = 'running'
    RETURNING t.id
), {_TOLD}
SELECT id FROM done, (SELECT count(*) FROM told) AS n
"""

# Record successful attempts (fenced) with their results ($3, JSON; null for none) and the
# release of their unique identities; returns the ids recorded.
COMPLETE_SUCCEEDED_WITH = f"""
WITH done AS (
    UPDATE tasks t SET status = 'succeeded', finished_at = now(), updated_at = now(),
        result = c.result
    FROM unnest($1::uuid[], $2::int[], $3::jsonb[]) AS c(id, attempt, result)
    WHERE t.id = c.id AND t.attempt = c.attempt AND t.status = 'running'
    RETURNING t.id, t.unique_states
), {_RELEASE.format(bit=8)}, {_TOLD}
SELECT id FROM done, (SELECT count(*) FROM told) AS n
"""

# Record one successful attempt, with its result ($3, JSON or null), inside the handler's own
# transaction (exactly-once handlers).
COMPLETE_SUCCEEDED_ONE = f"""
WITH done AS (
    UPDATE tasks SET status = 'succeeded', finished_at = now(), updated_at = now(),
        result = $3::jsonb
    WHERE id = $1 AND attempt = $2 AND status = 'running'
    RETURNING id, unique_states
), {_RELEASE.format(bit=8)}, {_TOLD}
SELECT id FROM done, (SELECT count(*) FROM told) AS n
"""

# Record failed attempts that will run again: keep the error in the history, bump the
# attempt (the fencing token) and queue the retry in the due table after its backoff.
COMPLETE_RETRY = """
WITH c AS (
    SELECT * FROM unnest($1::uuid[], $2::int[], $3::jsonb[], $4::text[], $5::int[])
        AS c(id, attempt, error, outcome, delay_ms)
), upd AS (
    UPDATE tasks t
    SET status = 'retrying', attempt = t.attempt + 1, last_error = c.error, updated_at = now()
    FROM c
    WHERE t.id = c.id AND t.attempt = c.attempt AND t.status = 'running'
    RETURNING t.id, c.attempt, t.priority, t.consumer, t.started_at, c.error, c.outcome,
        now() + c.delay_ms * interval '1 millisecond' AS due_at
), hist AS (
    INSERT INTO task_attempts (task_id, attempt, outcome, consumer, started_at, error)
    SELECT id, attempt, outcome, consumer, started_at, error FROM upd
), retry AS (
    INSERT INTO due (bucket, due_at, task_id, attempt, priority, kind)
    SELECT date_trunc('hour', due_at, 'UTC'), due_at, id, attempt + 1, priority, 'retry'
    FROM upd
)
SELECT id FROM upd
"""

# Record failed attempts that end the task: dead, with the error history and a dead letter;
# their unique identities are released and the waiters told.
COMPLETE_DEAD = f"""
WITH c AS (
    SELECT * FROM unnest($1::uuid[], $2::int[], $3::jsonb[], $4::text[], $5::text[])
        AS c(id, attempt, error, outcome, reason)
), done AS (
    UPDATE tasks t
    SET status = 'dead', last_error = c.error, finished_at = now(), updated_at = now()
    FROM c
    WHERE t.id = c.id AND t.attempt = c.attempt AND t.status = 'running'
    RETURNING t.id, c.attempt, t.priority, t.type, t.consumer, t.started_at, c.error,
        c.outcome, c.reason, t.unique_states, t.tenant
), hist AS (
    INSERT INTO task_attempts (task_id, attempt, outcome, consumer, started_at, error)
    SELECT id, attempt, outcome, consumer, started_at, error FROM done
), letter AS (
    INSERT INTO dead_letters (task_id, priority, type, attempt, reason, error, tenant)
    SELECT id, priority, type, attempt, reason, error, tenant FROM done
    ON CONFLICT (task_id) DO UPDATE SET priority = excluded.priority, attempt = excluded.attempt,
        reason = excluded.reason, error = excluded.error, dead_at = now()
), {_RELEASE.format(bit=32)}, {_TOLD}
SELECT id FROM done, (SELECT count(*) FROM told) AS n
"""

# Record snoozed attempts (a handler raised Snooze): scheduled again after $3 ms with the next
# attempt as its fencing token, and first_attempt moved with it, so no attempt is used up;
# the snooze is kept in the history. Returns the ids recorded.
COMPLETE_SNOOZE = """
WITH c AS (
    SELECT * FROM unnest($1::uuid[], $2::int[], $3::int[]) AS c(id, attempt, delay_ms)
), upd AS (
    UPDATE tasks t
    SET status = 'scheduled', attempt = t.attempt + 1, first_attempt = t.first_attempt + 1,
        run_at = now() + c.delay_ms * interval '1 millisecond', updated_at = now()
    FROM c
    WHERE t.id = c.id AND t.attempt = c.attempt AND t.status = 'running'
    RETURNING t.id, c.attempt, t.priority, t.consumer, t.started_at, t.run_at
), hist AS (
    INSERT INTO task_attempts (task_id, attempt, outcome, consumer, started_at)
    SELECT id, attempt, 'snoozed', consumer, started_at FROM upd
), later AS (
    INSERT INTO due (bucket, due_at, task_id, attempt, priority, kind)
    SELECT date_trunc('hour', run_at, 'UTC'), run_at, id, attempt + 1, priority, 'delayed'
    FROM upd
)
SELECT id FROM upd
"""

# Take the due rows whose time has come (only the current and overdue hourly buckets are
# read), delete them, and mark their tasks queued (fenced); returns what to publish and how
# late each is. Rows another watcher holds are skipped.
MOVE_DUE = """
WITH due_now AS (
    SELECT task_id, attempt, due_at FROM due
    WHERE bucket <= date_trunc('hour', now(), 'UTC') AND due_at <= now()
    ORDER BY bucket, due_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM due d USING due_now n WHERE d.task_id = n.task_id AND d.attempt = n.attempt
), moved AS (
    UPDATE tasks t SET status = 'queued', queued_at = now(), updated_at = now()
    FROM due_now n
    WHERE t.id = n.task_id AND t.attempt = n.attempt AND t.status IN ('retrying', 'scheduled')
    RETURNING t.id, t.attempt, t.priority, t.trace_context,
        extract(epoch FROM now() - n.due_at)::float8 AS late_s
), outboxed AS (
    INSERT INTO outbox (task_ids)
    SELECT array_agg(id) FROM moved WHERE true HAVING count(*) > 0
    RETURNING id
)
SELECT moved.*, (SELECT id FROM outboxed) AS outbox_id FROM moved
"""

# An outbox row is done with: its tasks' entries are in Redis.
OUTBOX_DONE = "DELETE FROM outbox WHERE id = ANY($1::bigint[])"

# Outbox rows older than $1 ms that no other watcher holds (their publisher died, or Redis
# refused): each with the tasks it names that are still queued, as their entries must be.
OUTBOX_STRANDED = """
WITH picked AS (
    SELECT id, task_ids FROM outbox
    WHERE created_at < now() - $1 * interval '1 millisecond'
    ORDER BY id LIMIT $2
    FOR UPDATE SKIP LOCKED
)
SELECT p.id AS outbox_id, t.id, t.attempt, t.priority, t.trace_context
FROM picked p LEFT JOIN tasks t ON t.id = ANY(p.task_ids) AND t.status = 'queued'
"""

# Up to $1 outbox rows of transactional enqueues (source 'enqueue') that no other watcher
# holds, each with the tasks it names that are still queued: the watcher publishes them at
# once, then deletes the rows, in one transaction (a crash in between leaves the rows: their
# tasks are published again, and fencing drops the duplicate entries).
OUTBOX_ENQUEUED = """
WITH picked AS (
    SELECT id, task_ids FROM outbox
    WHERE source = 'enqueue'
    ORDER BY id LIMIT $1
    FOR UPDATE SKIP LOCKED
)
SELECT p.id AS outbox_id, t.id, t.attempt, t.priority, t.trace_context
FROM picked p LEFT JOIN tasks t ON t.id = ANY(p.task_ids) AND t.status = 'queued'
"""

# The id $2 rows after $1 in id order (the end of the next batch of a sweep), or null when
# fewer are left.
SWEEP_BOUND = "SELECT id FROM tasks WHERE id > $1 ORDER BY id OFFSET $2 LIMIT 1"

# Queued tasks with ids in ($1, $2] (null: to the end) last published before their
# priority's cutoff ($3 priorities, $4 cutoffs): their entries are presumed lost; stamped so
# they are not re-sent again soon, and returned. One batch of the repair's slow sweep, or,
# with cutoffs in the far future, of the re-send of everything after Redis lost it all.
# Parked tasks (their type paused) and those waiting for a concurrency slot are left out.
REPUBLISH_QUEUED = """
WITH stale AS (
    SELECT t.id FROM tasks t
    JOIN unnest($3::text[], $4::timestamptz[]) AS c(priority, before) ON c.priority = t.priority
    WHERE t.id > $1 AND ($2::uuid IS NULL OR t.id <= $2)
        AND t.status = 'queued' AND t.updated_at < c.before
        -- A parked task (its type paused) has no entry on purpose: the unpark sends it.
        AND NOT EXISTS (SELECT 1 FROM parked_tasks p WHERE p.task_id = t.id)
        -- Nor does a task waiting for a concurrency slot: the unwait role sends it.
        AND NOT EXISTS (SELECT 1 FROM limit_waits w WHERE w.task_id = t.id)
        -- Nor one held back for its tenant's fair share: the fair role sends it.
        AND NOT EXISTS (SELECT 1 FROM fair_held h WHERE h.task_id = t.id)
    FOR UPDATE OF t SKIP LOCKED
)
UPDATE tasks t SET updated_at = now()
FROM stale WHERE t.id = stale.id
RETURNING t.id, t.attempt, t.priority, t.trace_context
"""

# The state of tasks whose entries stalled: decides reclaim, re-delivery or drop.
STALLED_TASKS = """
SELECT id, attempt, status, entry_id, type, priority, consumer, first_attempt, max_attempts,
    retry_base_ms, retry_max_ms, retry_jitter_ms
FROM tasks WHERE id = ANY($1::uuid[])
"""

# Running tasks with ids in ($3, $4] (null: to the end) claimed more than $1 ms ago (by
# Postgres's clock), and whether their handler timeout plus $1 has run out too (a live
# executor would have settled them): one batch of the orphan sweep.
RUNNING_BEFORE = """
SELECT id, attempt, status, entry_id, type, priority, consumer, first_attempt, max_attempts,
    retry_base_ms, retry_max_ms, retry_jitter_ms,
    started_at + (timeout_ms + $1) * interval '1 millisecond' < now() AS timed_out
FROM tasks
WHERE id > $3 AND ($4::uuid IS NULL OR id <= $4)
    AND status = 'running' AND updated_at < now() - $1 * interval '1 millisecond'
LIMIT $2
"""

# Keep undecodable stream entries durably (once each).
INSERT_DEAD_ENTRIES = """
INSERT INTO dead_entries (priority, entry_id, fields, reason)
SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::text[])
ON CONFLICT DO NOTHING
"""

# Failed attempts of one task, oldest first.
SELECT_ATTEMPTS = """
SELECT attempt, outcome, consumer, started_at, finished_at, error
FROM task_attempts WHERE task_id = $1 ORDER BY attempt
"""

# Liveness of the database (readyz).
PING = "SELECT 1"

# Load generator: which of these tasks are not yet terminal, with their status.
SELECT_UNFINISHED = """
SELECT id, status FROM tasks
WHERE id = ANY($1::uuid[]) AND status NOT IN ('succeeded', 'dead', 'cancelled')
"""

# Load generator: each task's timeline (first attempt's queue and start, final attempt's run)
# and how many of its attempts the janitor reclaimed.
SELECT_TIMINGS = """
SELECT t.id, t.type, t.priority, t.status, t.attempt - t.first_attempt + 1 AS attempts,
    t.consumer, t.created_at,
    CASE WHEN t.attempt = t.first_attempt THEN t.queued_at ELSE t.created_at END AS queued_at,
    coalesce(a.first_started_at, t.started_at) AS first_started_at,
    t.started_at, t.finished_at, a.reaped
FROM tasks t
CROSS JOIN LATERAL (
    SELECT min(started_at) FILTER (WHERE attempt = t.first_attempt) AS first_started_at,
        count(*) FILTER (WHERE outcome = 'reclaimed')::int AS reaped
    FROM task_attempts WHERE task_id = t.id
) a
WHERE t.id = ANY($1::uuid[])
"""


# Operators (shared/ops.py). The dead-letter queries share one filter, $1..$8: task ids,
# priority, type, reason, error substring (of the error's type or message, any case),
# died at or after, died before, and the tenant (null: every tenant).

# Per priority: due rows waiting by kind (retry, delayed), and dead letters held ("dead"):
# the sum of the counted changes, never a count of the tables.
QUEUE_DEPTHS = """
SELECT priority, kind, sum(n)::bigint AS n FROM queue_counts GROUP BY priority, kind
"""

# Fold the counted changes into one row per priority and kind (rows added meanwhile stay).
COMPACT_QUEUE_COUNTS = """
WITH folded AS (DELETE FROM queue_counts RETURNING *)
INSERT INTO queue_counts SELECT priority, kind, sum(n) FROM folded GROUP BY priority, kind
"""

# Several tasks without their payload, with their age by the database's clock (pending view).
TASK_SUMMARIES = """
SELECT id, type, status, attempt, first_attempt, created_at,
    (extract(epoch FROM now() - created_at) * 1000)::bigint AS age_ms, tenant
FROM tasks WHERE id = ANY($1::uuid[])
"""

# The dead letter of one task, if it has one.
SELECT_DEAD_LETTER = """
SELECT d.task_id, d.priority, d.type, d.attempt, d.attempt - t.first_attempt + 1 AS attempts,
    d.reason, d.error, d.dead_at, t.created_at
FROM dead_letters d JOIN tasks t ON t.id = d.task_id
WHERE d.task_id = $1
"""

# The dead-letter filter shared by the queries below: ids, priority, type, reason, an error
# substring, a dead_at range and the tenant ($1..$8).
DLQ_FILTER = """  AND ($1::uuid[] IS NULL OR d.task_id = ANY($1::uuid[]))
  AND ($2::text IS NULL OR d.priority = $2)
  AND ($3::text IS NULL OR d.type = $3)
  AND ($4::text IS NULL OR d.reason = $4)
  AND ($5::text IS NULL OR strpos(lower(concat_ws(': ', d.error->>'type',
      d.error->>'message')), lower($5)) > 0)
  AND ($6::timestamptz IS NULL OR d.dead_at >= $6)
  AND ($7::timestamptz IS NULL OR d.dead_at < $7)
  AND ($8::text IS NULL OR d.tenant = $8)"""

# A page of dead letters, newest first, filtered; the cursor is the last (dead_at, task_id).
LIST_DEAD_LETTERS = f"""
SELECT d.task_id, d.priority, d.type, d.attempt, d.attempt - t.first_attempt + 1 AS attempts,
    d.reason, d.error, d.dead_at, t.created_at
FROM dead_letters d JOIN tasks t ON t.id = d.task_id
WHERE true
{DLQ_FILTER}
  AND ($9::timestamptz IS NULL OR (d.dead_at, d.task_id) < ($9, $10::uuid))
ORDER BY d.dead_at DESC, d.task_id DESC
LIMIT $11
"""

# A page of dead letters by number (the seeds' GET /failedJobs), newest first: $9 rows after
# skipping $10.
PAGE_DEAD_LETTERS = f"""
SELECT d.task_id, d.priority, d.type, d.attempt, d.attempt - t.first_attempt + 1 AS attempts,
    d.reason, d.error, d.dead_at, t.created_at
FROM dead_letters d JOIN tasks t ON t.id = d.task_id
WHERE true
{DLQ_FILTER}
ORDER BY d.dead_at DESC, d.task_id DESC
LIMIT $9 OFFSET $10
"""

# Dead letters a replay would take (dry run), oldest first, with how many match in all.
MATCH_DEAD_LETTERS = f"""
SELECT d.task_id, d.priority, d.type, d.reason, d.dead_at, count(*) OVER () AS total
FROM dead_letters d JOIN tasks t ON t.id = d.task_id
WHERE t.status = 'dead'
{DLQ_FILTER}
ORDER BY d.dead_at, d.task_id
LIMIT $9
"""

# Dead letters a purge would delete (dry run), oldest first, with how many match in all.
MATCH_DEAD_LETTERS_ANY = f"""
SELECT d.task_id, d.priority, d.type, d.reason, d.dead_at, count(*) OVER () AS total
FROM dead_letters d
WHERE true
{DLQ_FILTER}
ORDER BY d.dead_at, d.task_id
LIMIT $9
"""

# Replay a batch of dead letters, oldest first: delete the letters and queue their tasks with
# fresh attempts (first_attempt moves to the new attempt; the fencing token keeps growing);
# returns what to publish. Letters another replay or purge holds are skipped.
REPLAY_DEAD_LETTERS = f"""
WITH picked AS (
    SELECT d.task_id, d.reason, d.dead_at
    FROM dead_letters d JOIN tasks t ON t.id = d.task_id
    WHERE t.status = 'dead'
{DLQ_FILTER}
    ORDER BY d.dead_at, d.task_id
    LIMIT $9
    FOR UPDATE OF d, t SKIP LOCKED
), gone AS (
    DELETE FROM dead_letters d USING picked p WHERE d.task_id = p.task_id
), replayed AS (
    UPDATE tasks t
    SET status = 'queued', attempt = t.attempt + 1, first_attempt = t.attempt + 1,
        queued_at = now(), updated_at = now(), started_at = NULL, finished_at = NULL,
        consumer = NULL, entry_id = NULL
    FROM picked p
    WHERE t.id = p.task_id
    RETURNING t.id AS task_id, t.attempt, t.priority, t.type, t.trace_context, p.reason,
        p.dead_at
), reheld AS (
    -- A replayed unique task holds its identity again, unless another task took it meanwhile
    -- (then the replay, an operator's decision, runs beside that one).
    UPDATE unique_claims u SET held = true
    FROM replayed r WHERE u.task_id = r.task_id AND NOT u.held
), outboxed AS (
    INSERT INTO outbox (task_ids)
    SELECT array_agg(task_id) FROM replayed HAVING count(*) > 0
    RETURNING id
)
SELECT replayed.*, (SELECT id FROM outboxed) AS outbox_id FROM replayed
"""

# Delete a batch of dead-letter records, oldest first (their tasks stay dead, history kept).
PURGE_DEAD_LETTERS = f"""
WITH picked AS (
    SELECT d.task_id FROM dead_letters d
    WHERE true
{DLQ_FILTER}
    ORDER BY d.dead_at, d.task_id
    LIMIT $9
    FOR UPDATE SKIP LOCKED
)
DELETE FROM dead_letters d USING picked p
WHERE d.task_id = p.task_id
RETURNING d.task_id, d.priority, d.type, d.reason, d.dead_at
"""

# Retention (janitor): where the walk over the tasks stands.
SELECT_CURSOR = "SELECT position FROM maintenance_cursors WHERE name = $1"

# Retention: move the walk forward.
SET_CURSOR = """
INSERT INTO maintenance_cursors (name, position) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET position = excluded.position
"""

# Retention: the next $3 tasks after $1 created before $2 (ids are time-ordered): delete those
# finished longer ago than their end state's age ($4 succeeded, $5 cancelled, $6 dead, in ms),
# with their attempts, due rows and dead letter (cascade) and unique identity; set the others
# aside to look at again when they may be due. Returns the last id read and how many went.
RETENTION_WALK = """
WITH batch AS (
    SELECT id, status, finished_at FROM tasks
    WHERE id > $1 AND id < $2 ORDER BY id LIMIT $3
), aged AS (
    SELECT id, status, finished_at,
        finished_at + CASE status WHEN 'succeeded' THEN $4::bigint
            WHEN 'cancelled' THEN $5::bigint WHEN 'dead' THEN $6::bigint END
            * interval '1 millisecond' AS expires_at
    FROM batch
), gone AS (
    DELETE FROM tasks t USING aged a
    WHERE t.id = a.id AND a.expires_at < now()
    RETURNING t.id
), unclaimed AS (
    -- No foreign key ties a unique identity to its task (it would tax every task update).
    DELETE FROM unique_claims c USING gone g WHERE c.task_id = g.id
), unstepped AS (
    -- Nor a workflow step or edge (they go with their tasks).
    DELETE FROM workflow_steps s USING gone g WHERE s.task_id = g.id
), unlinked AS (
    DELETE FROM workflow_edges e USING gone g WHERE e.child = g.id
), later AS (
    INSERT INTO retention_later (task_id, recheck_at)
    SELECT id, coalesce(expires_at, now() + interval '1 hour') FROM aged
    WHERE expires_at IS NULL OR expires_at >= now()
    ON CONFLICT (task_id) DO NOTHING
)
SELECT (SELECT id FROM batch ORDER BY id DESC LIMIT 1) AS last,
    (SELECT count(*) FROM batch) AS read, (SELECT count(*) FROM gone) AS deleted
"""

# Retention: look again at up to $1 tasks set aside whose time may have come ($2, $3, $4: the
# ages as above): delete those past their age, move the others' next look.
RETENTION_RECHECK = """
WITH due_now AS (
    SELECT l.task_id, t.id, t.status,
        t.finished_at + CASE t.status WHEN 'succeeded' THEN $2::bigint
            WHEN 'cancelled' THEN $3::bigint WHEN 'dead' THEN $4::bigint END
            * interval '1 millisecond' AS expires_at
    FROM retention_later l LEFT JOIN tasks t ON t.id = l.task_id
    WHERE l.recheck_at <= now()
    ORDER BY l.recheck_at LIMIT $1
    FOR UPDATE OF l SKIP LOCKED
), gone AS (
    DELETE FROM tasks t USING due_now d WHERE t.id = d.id AND d.expires_at < now()
    RETURNING t.id
), unclaimed AS (
    DELETE FROM unique_claims c USING gone g WHERE c.task_id = g.id
), unstepped AS (
    DELETE FROM workflow_steps s USING gone g WHERE s.task_id = g.id
), unlinked AS (
    DELETE FROM workflow_edges e USING gone g WHERE e.child = g.id
), settled AS (
    DELETE FROM retention_later l USING due_now d
    WHERE l.task_id = d.task_id AND (d.id IS NULL OR d.expires_at < now())
), moved AS (
    UPDATE retention_later l SET recheck_at = coalesce(d.expires_at, now() + interval '1 hour')
    FROM due_now d
    WHERE l.task_id = d.task_id AND d.id IS NOT NULL
        AND (d.expires_at IS NULL OR d.expires_at >= now())
)
SELECT (SELECT count(*) FROM due_now) AS looked, (SELECT count(*) FROM gone) AS deleted
"""

# Retention: expire up to $2 idempotency keys older than $1 ms (after that the key is free).
EXPIRE_IDEMPOTENCY_KEYS = """
DELETE FROM idempotency_keys WHERE (tenant, key) IN (
    SELECT tenant, key FROM idempotency_keys
    WHERE created_at < now() - $1 * interval '1 millisecond'
    ORDER BY created_at LIMIT $2
)
"""

# Retention: delete up to $2 dead entries older than $1 ms.
EXPIRE_DEAD_ENTRIES = """
DELETE FROM dead_entries WHERE (priority, entry_id) IN (
    SELECT priority, entry_id FROM dead_entries
    WHERE dead_at < now() - $1 * interval '1 millisecond'
    ORDER BY dead_at LIMIT $2
)
"""

# The database's clock: one "as of" for an operation done in several transactions.
DB_NOW = "SELECT now()"

ALL: dict[str, str] = {
    name: value
    for name, value in globals().items()
    if name.isupper() and not name.startswith("_") and name not in ("ALL", "DLQ_FILTER")
}
