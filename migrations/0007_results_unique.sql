-- Building on taskstream from an application (issue 11): results, unique tasks, snooze and the
-- transactional enqueue's outbox rows. Nothing here costs a task that uses none of it: the new
-- task columns are null for it (adding a nullable column without a default rewrites nothing),
-- no new index names a column a claim or a completion changes (so those stay HOT updates), and
-- no foreign key points at tasks (each would add a trigger check to every update of a row).

-- A handler's return value, written by the same fenced UPDATE that records its success; null
-- when it returned None (nothing is written for it then).
ALTER TABLE tasks ADD COLUMN result jsonb;

-- Unique tasks. `unique_states` is set only on a task submitted with a `unique` option: the
-- statuses (a bitmask, bit i for the i-th of scheduled, queued, running, succeeded, retrying,
-- dead, cancelled) in which it holds its unique identity. Null for every other task, so the
-- statements that end tasks release claims only for rows that have one.
ALTER TABLE tasks ADD COLUMN unique_states integer;

-- One row per unique identity (the hash of the task's type and its `unique` fields): the task
-- that holds it, whether that task is still in one of its unique states (`held`), and until
-- when its period (`for`) holds it regardless. The primary key is what enforces uniqueness: a
-- second task takes an identity only by INSERT … ON CONFLICT DO UPDATE … WHERE the row is
-- free (not held, period over), which concurrent inserters resolve on the index itself (one
-- waits for the other's commit, then sees its row), never by a lock or a check-then-act. The
-- state lives here, not in an index on tasks, so no claim or completion of a plain task
-- touches it; a task leaves its states in the same statement that sets `held` false.
CREATE TABLE unique_claims (
    hash       bytea PRIMARY KEY,
    task_id    uuid NOT NULL,
    held       boolean NOT NULL DEFAULT true,
    until      timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- Releasing a task's claim when it ends, and deleting it with the task (retention).
CREATE INDEX unique_claims_task ON unique_claims (task_id);

-- A snoozed attempt is kept in the history like a failed one (it used no attempt: the task's
-- attempts are counted from first_attempt, which the snooze moves forward with the token).
ALTER TABLE task_attempts DROP CONSTRAINT IF EXISTS task_attempts_outcome_check;
ALTER TABLE task_attempts ADD CONSTRAINT task_attempts_outcome_check
    CHECK (outcome IN ('failed', 'timeout', 'dead', 'reclaimed', 'worker_lost', 'snoozed'))
    NOT VALID;  -- every row already has one of the older outcomes: no need to read them all

-- Outbox rows written by `taskstream.enqueue` inside an application's own transaction
-- (`source = 'enqueue'`): nobody publishes them at once but the watcher, which LISTENs for the
-- notification their transaction sends on commit. Ingest's and the movers' rows (source null)
-- are deleted by their own publisher; the repair re-sends any row older than OUTBOX_GRACE_MS.
ALTER TABLE outbox ADD COLUMN source text;
CREATE INDEX outbox_enqueued ON outbox (id) WHERE source = 'enqueue';
