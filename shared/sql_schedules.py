"""The queries of schedules and queue pauses, one named constant each, with one line saying
what it does (the task queries are in ``sql``). A test prepares each against a migrated
database, with the others.

Lock order, shared by every writer here: a schedule row, then due rows, then task rows (the
due mover's order after the first), so no two of them can deadlock.
"""

from taskstream.shared.sql import requeue_gone

_requeue_task = requeue_gone("t")

# The columns of a schedule as ``shared.db.schedules`` reads them.
_SCHEDULE = """s.name, s.cron, s.every_ms, s.timezone, s.task::text AS task, s.overlap,
    s.catchup_ms, s.jitter_ms, s.start_at, s.end_at, s.paused, s.note, s.paused_at, s.next_tick,
    s.next_release, s.buffered_for, s.enqueued, s.caught_up, s.skipped, s.missed, s.triggered,
    s.created_at, s.updated_at"""

# One schedule, locked for a change (create-or-replace, pause, resume, trigger), with the
# transaction's now().
LOCK_SCHEDULE = f"SELECT {_SCHEDULE}, now() AS now FROM schedules s WHERE s.name = $1 FOR UPDATE"

# One schedule.
SELECT_SCHEDULE = f"SELECT {_SCHEDULE} FROM schedules s WHERE s.name = $1"

# Every schedule, by name.
LIST_SCHEDULES = f"SELECT {_SCHEDULE} FROM schedules s ORDER BY s.name"

# Create a schedule unless one of that name exists (a concurrent create): returns its name if
# this statement made it.
INSERT_SCHEDULE = """
INSERT INTO schedules (name, cron, every_ms, timezone, task, overlap, catchup_ms, jitter_ms,
    start_at, end_at, paused, note, paused_at, next_tick, next_release, buffered_for)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
ON CONFLICT (name) DO NOTHING
RETURNING name
"""

# Replace a schedule's spec and state (its counters stay).
UPDATE_SCHEDULE = """
UPDATE schedules SET cron = $2, every_ms = $3, timezone = $4, task = $5::jsonb, overlap = $6,
    catchup_ms = $7, jitter_ms = $8, start_at = $9, end_at = $10, paused = $11, note = $12,
    paused_at = $13, next_tick = $14, next_release = $15, buffered_for = $16, updated_at = now()
WHERE name = $1
"""

# Delete a schedule (its runs go with it; the tasks it made stay); returns its name.
DELETE_SCHEDULE = "DELETE FROM schedules WHERE name = $1 RETURNING name"

# Delete the schedules not named in $1 (apply --prune); returns their names.
PRUNE_SCHEDULES = "DELETE FROM schedules WHERE name <> ALL($1::text[]) RETURNING name"

# Serialise concurrent applies: a transaction-level advisory lock ($1).
APPLY_LOCK = "SELECT pg_advisory_xact_lock($1)"

# The latest $2 runs of a schedule, newest first, with their tasks' status (null: deleted).
SELECT_RUNS = """
SELECT r.scheduled_for, r.outcome, r.task_id, r.created_at, t.status
FROM schedule_runs r LEFT JOIN tasks t ON t.id = r.task_id
WHERE r.schedule = $1
ORDER BY r.scheduled_for DESC
LIMIT $2
"""

# How many schedules are active, paused and ended (the schedules gauge).
SCHEDULE_STATES = """
SELECT CASE WHEN paused THEN 'paused' WHEN next_tick IS NULL THEN 'ended' ELSE 'active' END
    AS state, count(*) AS n
FROM schedules GROUP BY 1
"""

# The schedules a watcher fires now ($1, or Postgres's now() when null), at most $2, locked
# (another watcher skips them): those whose next release has come and those holding a
# buffered tick, each with its latest run's task (status, whether it started) for the
# overlap policy.
LOCK_DUE_SCHEDULES = f"""
WITH due AS (
    SELECT name FROM schedules
    WHERE NOT paused
        AND (next_release <= coalesce($1::timestamptz, now()) OR buffered_for IS NOT NULL)
    ORDER BY next_release
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
SELECT {_SCHEDULE}, coalesce($1::timestamptz, now()) AS now, r.task_id AS last_task,
    t.status AS last_status, t.started_at AS last_started_at
FROM due JOIN schedules s ON s.name = due.name
LEFT JOIN LATERAL (
    SELECT task_id FROM schedule_runs WHERE schedule = s.name
    ORDER BY scheduled_for DESC LIMIT 1
) r ON true
LEFT JOIN tasks t ON t.id = r.task_id
"""

# Insert the runs of fired ticks and, for each run this statement made (a tick another
# watcher already made conflicts and makes nothing), its task: queued now, naming its
# schedule and tick, with an outbox row; returns what to publish. $1 schedules, $2 ticks,
# $3 outcomes, $4.. the tasks.
FIRE_RUNS = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::uuid[], $5::text[],
        $6::text[], $7::jsonb[], $8::int[], $9::int[], $10::int[], $11::int[], $12::int[])
        AS i(schedule, scheduled_for, outcome, id, type, priority, payload, max_attempts,
            retry_base_ms, retry_max_ms, retry_jitter_ms, timeout_ms)
), runs AS (
    INSERT INTO schedule_runs (schedule, scheduled_for, task_id, outcome)
    SELECT schedule, coalesce(scheduled_for, now()), id, outcome FROM input
    ON CONFLICT (schedule, scheduled_for) DO NOTHING
    RETURNING task_id, scheduled_for
), inserted AS (
    INSERT INTO tasks (id, type, priority, payload, status, max_attempts, retry_base_ms,
        retry_max_ms, retry_jitter_ms, timeout_ms, run_at, queued_at, schedule, scheduled_for,
        tenant)
    SELECT i.id, i.type, i.priority, i.payload, 'queued', i.max_attempts, i.retry_base_ms,
        i.retry_max_ms, i.retry_jitter_ms, i.timeout_ms, now(), now(), i.schedule,
        r.scheduled_for,
        -- A tenant's schedule is stored as "<tenant>/<name>" (shared/schedule_ops.py).
        CASE WHEN strpos(i.schedule, '/') > 0 THEN split_part(i.schedule, '/', 1)
            ELSE 'default' END
    FROM input i JOIN runs r ON r.task_id = i.id
    RETURNING id, attempt, priority, trace_context
), outboxed AS (
    INSERT INTO outbox (task_ids)
    SELECT array_agg(id) FROM inserted HAVING count(*) > 0
    RETURNING id
)
SELECT inserted.*, (SELECT id FROM outboxed) AS outbox_id FROM inserted
"""

# Keep the latest $2 runs of each schedule in $1: older ticks can never fire again (a
# schedule's next tick only moves forward), so their rows are only history.
PRUNE_RUNS = """
DELETE FROM schedule_runs r
USING unnest($1::text[]) AS s(name),
LATERAL (
    SELECT scheduled_for FROM schedule_runs WHERE schedule = s.name
    ORDER BY scheduled_for DESC OFFSET $2 LIMIT 1
) AS oldest_kept
WHERE r.schedule = s.name AND r.scheduled_for <= oldest_kept.scheduled_for
"""

# Lock the due rows of tasks about to be cancelled (the due mover's order: due, then tasks).
LOCK_DUE_OF_TASKS = "SELECT 1 FROM due WHERE task_id = ANY($1::uuid[]) FOR UPDATE"

# Cancel previous runs that have not started (cancel_previous): queued or scheduled, never
# claimed; returns the ids cancelled.
CANCEL_UNSTARTED = """
WITH cancelled AS (
    UPDATE tasks SET status = 'cancelled', updated_at = now(), finished_at = now()
    WHERE id = ANY($1::uuid[]) AND status IN ('scheduled', 'queued') AND started_at IS NULL
    RETURNING id
), undue AS (
    DELETE FROM due WHERE task_id IN (SELECT id FROM cancelled)
)
SELECT id FROM cancelled
"""

# Move fired schedules on: next tick and release, buffered tick, and the counts of this pass.
ADVANCE_SCHEDULES = """
UPDATE schedules s SET next_tick = u.next_tick, next_release = u.next_release,
    buffered_for = u.buffered_for, enqueued = s.enqueued + u.enqueued,
    caught_up = s.caught_up + u.caught_up, skipped = s.skipped + u.skipped,
    missed = s.missed + u.missed
FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::timestamptz[], $5::bigint[],
    $6::bigint[], $7::bigint[], $8::bigint[])
    AS u(name, next_tick, next_release, buffered_for, enqueued, caught_up, skipped, missed)
WHERE s.name = u.name
"""

# Count a manual run of a schedule.
COUNT_TRIGGERED = "UPDATE schedules SET triggered = triggered + 1 WHERE name = $1"

# Pause a queue (a priority or a task type), or change its note; returns the pause and
# whether this statement made it.
PAUSE_QUEUE = """
INSERT INTO queue_pauses (kind, name, note) VALUES ($1, $2, $3)
ON CONFLICT (kind, name) DO UPDATE SET note = coalesce(excluded.note, queue_pauses.note)
RETURNING kind, name, note, paused_at, (xmax = 0) AS created
"""

# Resume a queue; returns it if it was paused.
RESUME_QUEUE = "DELETE FROM queue_pauses WHERE kind = $1 AND name = $2 RETURNING kind, name"

# Every paused queue, with how many tasks are parked under each paused type.
LIST_PAUSES = """
SELECT q.kind, q.name, q.note, q.paused_at,
    CASE WHEN q.kind = 'type'
        THEN (SELECT count(*) FROM parked_tasks p WHERE p.type = q.name) ELSE 0 END AS parked
FROM queue_pauses q ORDER BY q.kind, q.name
"""

# What executors poll: the paused priorities and types (a handful of rows at most).
PAUSED_NAMES = "SELECT kind, name FROM queue_pauses"

# Park delivered tasks of a paused type ($3, as the executor last saw them; re-checked here):
# still queued at the delivered attempt, nothing claimed. Returns the ids parked (again, for
# a duplicate delivery), with their types.
PARK_PAUSED = """
INSERT INTO parked_tasks (task_id, attempt, priority, type)
SELECT t.id, t.attempt, t.priority, t.type
FROM unnest($1::uuid[], $2::int[]) AS d(id, attempt)
JOIN tasks t ON t.id = d.id AND t.attempt = d.attempt
WHERE t.status = 'queued' AND t.type = ANY($3::text[])
    AND EXISTS (SELECT 1 FROM queue_pauses q WHERE q.kind = 'type' AND q.name = t.type)
ON CONFLICT (task_id) DO UPDATE SET attempt = excluded.attempt, parked_at = now()
RETURNING task_id, type
"""

# Release up to $1 parked tasks whose type is no longer paused (rows another watcher holds
# are skipped): delete their rows, stamp those still queued at the parked attempt (so the
# repair does not take the new entry for a lost one) with an outbox row; returns what to
# publish.
UNPARK = f"""
WITH freed AS (
    SELECT p.task_id FROM parked_tasks p
    WHERE NOT EXISTS (SELECT 1 FROM queue_pauses q WHERE q.kind = 'type' AND q.name = p.type)
    ORDER BY p.task_id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM parked_tasks p USING freed f WHERE p.task_id = f.task_id
    RETURNING p.task_id, p.attempt
), {_requeue_task}
SELECT ready.*, (SELECT id FROM outboxed) AS outbox_id, (SELECT count(*) FROM gone) AS freed
FROM ready
"""

ALL: dict[str, str] = {
    name: value
    for name, value in globals().items()
    if name.isupper() and not name.startswith("_") and name != "ALL"
}
