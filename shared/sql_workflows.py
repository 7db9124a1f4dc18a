"""The queries of workflows, one named constant each, with one line saying what it does (the
task queries are in ``sql``). A test prepares each against a migrated database, with the others.

What moves a workflow on (releasing children, cancelling them after a failed parent, re-arming
them after a replay, the workflow's state) is the ``tasks_workflow_step`` trigger of
``migrations/0011_workflows.sql``: none of it is here, and no statement of plain tasks changed.

Lock order of a workflow cancel: due rows, then the workflow row, then task rows (a completion
locks its task rows, then, in its trigger, the workflow row, then its children's rows).
"""

# A new workflow, unless its idempotency key is taken (then nothing: returns no row).
INSERT_WORKFLOW = """
INSERT INTO workflows (id, name, idempotency_key, request_hash, steps, steps_left)
VALUES ($1, $2, $3, $4, $5, $5)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id
"""

# The workflow holding an idempotency key, with the digest of its request.
SELECT_WORKFLOW_BY_KEY = "SELECT id, request_hash FROM workflows WHERE idempotency_key = $1"

# A workflow's steps as tasks, in one statement: a step with parents waits (`waiting`: no
# entry, no due row); the others are queued, or scheduled with a due row when they ask for a
# time (Postgres's clock). Queued ones get an outbox row marked 'enqueue' and a notification:
# the watcher's outbox drain publishes them once this commits. $15 trace context, $16 the
# workflow, $17/$18 the edges (parent, child task ids). Returns how many went in.
INSERT_WORKFLOW_STEPS = """
WITH input AS (
    SELECT * FROM unnest(
        $1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int[], $6::int[], $7::int[],
        $8::int[], $9::int[], $10::timestamptz[], $11::bigint[], $12::text[], $13::int[],
        $14::text[]
    ) WITH ORDINALITY AS i(id, type, priority, payload, max_attempts, retry_base_ms,
        retry_max_ms, retry_jitter_ms, timeout_ms, run_at, delay_ms, name, parents_left,
        on_parent_failure, n)
), timed AS (
    SELECT *, coalesce(run_at, now() + coalesce(delay_ms, 0) * interval '1 millisecond')
        AS due_at
    FROM input
), inserted AS (
    INSERT INTO tasks (id, type, priority, payload, status, max_attempts, retry_base_ms,
        retry_max_ms, retry_jitter_ms, timeout_ms, run_at, queued_at, trace_context,
        workflow_id)
    SELECT id, type, priority, payload,
        CASE WHEN parents_left > 0 THEN 'waiting' WHEN due_at > now() THEN 'scheduled'
            ELSE 'queued' END,
        max_attempts, retry_base_ms, retry_max_ms, retry_jitter_ms, timeout_ms,
        greatest(due_at, now()),
        CASE WHEN parents_left = 0 AND due_at <= now() THEN now() END, $15, $16
    FROM timed
    ORDER BY n
    RETURNING id, status, run_at, priority
), steps AS (
    INSERT INTO workflow_steps (task_id, workflow_id, name, position, parents_left,
        on_parent_failure)
    SELECT id, $16, name, n, parents_left, on_parent_failure FROM input
), edges AS (
    INSERT INTO workflow_edges (parent, child)
    SELECT * FROM unnest($17::uuid[], $18::uuid[])
), delayed AS (
    INSERT INTO due (bucket, due_at, task_id, attempt, priority, kind)
    SELECT date_trunc('hour', run_at, 'UTC'), run_at, id, 1, priority, 'delayed'
    FROM inserted WHERE status = 'scheduled'
), outboxed AS (
    INSERT INTO outbox (task_ids, source)
    SELECT array_agg(id), 'enqueue' FROM inserted WHERE status = 'queued' HAVING count(*) > 0
    RETURNING id
), told AS (
    SELECT pg_notify('taskstream_outbox', '') FROM outboxed
)
SELECT (SELECT count(*) FROM inserted) AS inserted, (SELECT count(*) FROM told) AS told
"""

# One workflow.
SELECT_WORKFLOW = "SELECT * FROM workflows WHERE id = $1"

# A workflow's steps in submission order: the step, its task, and its parents' names.
SELECT_WORKFLOW_STEPS = """
SELECT s.name, s.position, s.on_parent_failure, s.cancel_reason, t.*,
    coalesce((SELECT array_agg(p.name ORDER BY p.position)
        FROM workflow_edges e JOIN workflow_steps p ON p.task_id = e.parent
        WHERE e.child = s.task_id), '{}') AS depends_on
FROM workflow_steps s JOIN tasks t ON t.id = s.task_id
WHERE s.workflow_id = $1
ORDER BY s.position
"""

# A page of workflows, newest first (ids are time-ordered), by state; the cursor is the last id.
LIST_WORKFLOWS = """
SELECT * FROM workflows
WHERE ($1::text IS NULL OR state = $1) AND ($2::uuid IS NULL OR id < $2)
ORDER BY id DESC
LIMIT $3
"""

# What a step's handler sees of its parents: each one's name, status, result and last error.
STEP_PARENTS = """
SELECT p.name, t.status, t.result::text AS result, t.last_error::text AS last_error
FROM workflow_edges e
JOIN workflow_steps p ON p.task_id = e.parent
JOIN tasks t ON t.id = e.parent
WHERE e.child = $1
ORDER BY p.position
"""

# Lock the due rows of a workflow's steps (a workflow cancel's first statement; see the lock
# order above).
LOCK_DUE_OF_WORKFLOW = """
SELECT 1 FROM due
WHERE task_id IN (SELECT task_id FROM workflow_steps WHERE workflow_id = $1)
FOR UPDATE
"""

# Mark a workflow cancelled (before its steps are, so the trigger ends it as cancelled);
# returns nothing when there is no such workflow.
MARK_WORKFLOW_CANCELLED = """
UPDATE workflows SET cancelled_at = coalesce(cancelled_at, now()) WHERE id = $1 RETURNING id
"""

# Cancel every step of a workflow not yet started (waiting, scheduled, queued, retrying): drop
# their due rows, tell the waiters; returns the ids cancelled. Running steps finish; their
# children are cancelled already.
CANCEL_WORKFLOW_STEPS = """
WITH done AS (
    UPDATE tasks t SET status = 'cancelled', updated_at = now(), finished_at = now()
    FROM workflow_steps s
    WHERE s.workflow_id = $1 AND t.id = s.task_id
        AND t.status IN ('waiting', 'scheduled', 'queued', 'retrying')
    RETURNING t.id
), marked AS (
    UPDATE workflow_steps s SET cancel_reason = 'workflow_cancelled'
    FROM done WHERE s.task_id = done.id
), undue AS (
    DELETE FROM due WHERE task_id IN (SELECT id FROM done)
), told AS (
    SELECT pg_notify('taskstream_done',
        CASE WHEN count(*) > 200 THEN '*' ELSE string_agg(id::text, ',') END)
    FROM (SELECT id FROM done LIMIT 201) AS d
    HAVING count(*) > 0
)
SELECT id FROM done, (SELECT count(*) FROM told) AS n
"""

# The workflows of these steps that have ended and whose end was not yet counted: marked
# counted, with their state (what workflows_finished_total counts, once per end).
COUNT_FINISHED_WORKFLOWS = """
UPDATE workflows SET counted = true
WHERE id IN (SELECT workflow_id FROM workflow_steps WHERE task_id = ANY($1::uuid[]))
    AND finished_at IS NOT NULL AND NOT counted
RETURNING id, state
"""

# Up to $1 ended workflows whose end nobody counted yet (ended by a task cancel or the
# janitor's dead letters): marked counted, with their state (the janitor's sweep).
COUNT_ENDED_WORKFLOWS = """
UPDATE workflows SET counted = true
WHERE id IN (
    SELECT id FROM workflows WHERE finished_at IS NOT NULL AND NOT counted
    ORDER BY id LIMIT $1
    FOR UPDATE SKIP LOCKED
)
RETURNING state
"""

ALL: dict[str, str] = {
    name: value
    for name, value in globals().items()
    if name.isupper() and not name.startswith("_") and name != "ALL"
}
