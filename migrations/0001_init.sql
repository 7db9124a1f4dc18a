-- The tables every service uses. Postgres owns every task; Redis only delivers.

-- One row per task. `attempt` is the fencing token: every state change is conditional on it
-- (and on the expected status), so a worker whose lease was taken over cannot write.
CREATE TABLE tasks (
    id              uuid PRIMARY KEY,
    type            text NOT NULL,
    priority        text NOT NULL CHECK (priority IN ('critical', 'high', 'default', 'low')),
    payload         jsonb NOT NULL,
    status          text NOT NULL CHECK (status IN ('scheduled', 'queued', 'running',
                        'succeeded', 'retrying', 'dead', 'cancelled')),
    attempt         integer NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    -- Attempts are counted from here; a replay from the dead letters moves it forward so the
    -- task gets fresh attempts while the fencing token keeps growing.
    first_attempt   integer NOT NULL DEFAULT 1,
    max_attempts    integer NOT NULL CHECK (max_attempts >= 1),
    retry_base_ms   integer NOT NULL,
    retry_max_ms    integer NOT NULL,
    retry_jitter_ms integer NOT NULL,
    timeout_ms      integer NOT NULL,
    idempotency_key text,
    run_at          timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    queued_at       timestamptz,
    started_at      timestamptz,
    finished_at     timestamptz,
    consumer        text,
    -- The stream entry of the current delivery (set at claim): lets the janitor tell a running
    -- task whose entry Redis lost from one whose lease is alive.
    entry_id        text,
    last_error      jsonb,
    trace_context   text
);
-- Listing newest first with a (created_at, id) cursor.
CREATE INDEX tasks_created_id ON tasks (created_at DESC, id DESC);
-- Tasks in flight, for the repair of entries Redis lost; small however large history grows.
CREATE INDEX tasks_in_flight ON tasks (status, updated_at) WHERE status IN ('queued', 'running');

-- Every attempt that did not succeed (the successful one is on the task row itself).
CREATE TABLE task_attempts (
    task_id     uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    attempt     integer NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN ('failed', 'timeout', 'dead', 'reclaimed',
                    'worker_lost')),
    consumer    text,
    started_at  timestamptz,
    finished_at timestamptz NOT NULL DEFAULT now(),
    error       jsonb,
    PRIMARY KEY (task_id, attempt)
);

-- Idempotency keys: one task per key; the request digest tells a replay from a conflict.
CREATE TABLE idempotency_keys (
    key          text PRIMARY KEY,
    task_id      uuid NOT NULL,
    request_hash bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Work that becomes due later: retries and delayed tasks, bucketed by hour so the watcher
-- reads only the current and overdue buckets however large the table grows.
CREATE TABLE due (
    bucket   timestamptz NOT NULL,
    due_at   timestamptz NOT NULL,
    task_id  uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    attempt  integer NOT NULL,
    priority text NOT NULL,
    kind     text NOT NULL CHECK (kind IN ('retry', 'delayed')),
    PRIMARY KEY (task_id, attempt),
    CHECK (bucket = date_trunc('hour', due_at, 'UTC'))
);
CREATE INDEX due_bucket_due_at ON due (bucket, due_at);

-- Dead letters: durable, per priority; the full error history is in task_attempts.
CREATE TABLE dead_letters (
    task_id  uuid PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    priority text NOT NULL,
    type     text NOT NULL,
    attempt  integer NOT NULL,
    reason   text NOT NULL,
    error    jsonb,
    dead_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_dead_at ON dead_letters (dead_at DESC, task_id DESC);
