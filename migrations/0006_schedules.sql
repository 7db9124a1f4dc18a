-- Recurring schedules and queue pauses (issue 12). Nothing here is read or written by the hot
-- path: the two new task columns are null for every task no schedule made (adding a nullable
-- column without a default rewrites nothing), and no new index touches a column a claim or a
-- completion changes. No foreign key points at tasks either: each would add a check to every
-- update of a task row.

-- Which schedule made a task, and for which tick (its scheduled time, UTC).
ALTER TABLE tasks ADD COLUMN schedule text, ADD COLUMN scheduled_for timestamptz;

-- One row per schedule: its spec (a cron expression in its IANA time zone, or a fixed interval
-- in milliseconds), the task body it makes (validated like POST /v1/tasks), its policies, and
-- where it stands. `next_tick` is the next scheduled time (UTC; null: ended), `next_release`
-- that time plus its jitter: the watcher fires a tick once `next_release` has come.
CREATE TABLE schedules (
    name          text PRIMARY KEY,
    cron          text,
    every_ms      bigint CHECK (every_ms > 0),
    timezone      text NOT NULL DEFAULT 'UTC',
    task          jsonb NOT NULL,
    overlap       text NOT NULL DEFAULT 'skip'
                      CHECK (overlap IN ('skip', 'buffer_one', 'allow', 'cancel_previous')),
    catchup_ms    bigint NOT NULL DEFAULT 0 CHECK (catchup_ms >= 0),
    jitter_ms     bigint NOT NULL DEFAULT 0 CHECK (jitter_ms >= 0),
    start_at      timestamptz,
    end_at        timestamptz,
    paused        boolean NOT NULL DEFAULT false,
    note          text,
    paused_at     timestamptz,
    next_tick     timestamptz,
    next_release  timestamptz,
    -- buffer_one: the one tick waiting for the previous run to finish.
    buffered_for  timestamptz,
    enqueued      bigint NOT NULL DEFAULT 0,
    caught_up     bigint NOT NULL DEFAULT 0,
    skipped       bigint NOT NULL DEFAULT 0,
    missed        bigint NOT NULL DEFAULT 0,
    triggered     bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((cron IS NULL) <> (every_ms IS NULL))
);
-- What the watcher reads each pass: schedules whose next release has come, and those holding
-- a buffered tick. Both small however many schedules there are.
CREATE INDEX schedules_due ON schedules (next_release) WHERE NOT paused;
CREATE INDEX schedules_buffered ON schedules (name) WHERE buffered_for IS NOT NULL AND NOT paused;

-- Every tick that made a task: the primary key is the tick's identity, so however many
-- watchers fire the same tick, one row and one task exist (the task is inserted only with its
-- row, in one statement). Skipped and missed ticks are counted on the schedule, not kept.
CREATE TABLE schedule_runs (
    schedule      text NOT NULL REFERENCES schedules (name) ON DELETE CASCADE,
    scheduled_for timestamptz NOT NULL,
    task_id       uuid NOT NULL,
    outcome       text NOT NULL CHECK (outcome IN ('enqueued', 'caught_up', 'triggered')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule, scheduled_for)
);

-- Paused queues, cluster-wide: a priority or a task type. Executors poll this (PAUSE_POLL_MS).
CREATE TABLE queue_pauses (
    kind      text NOT NULL CHECK (kind IN ('priority', 'type')),
    name      text NOT NULL,
    note      text,
    paused_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, name)
);

-- Tasks of a paused type an executor was handed: still queued, at the same attempt (nothing
-- claimed, no attempt used), their stream entry acknowledged. The watcher re-publishes them
-- once their type is resumed. (A paused priority is simply not read: its entries wait in the
-- stream.)
CREATE TABLE parked_tasks (
    task_id   uuid PRIMARY KEY,
    attempt   integer NOT NULL,
    priority  text NOT NULL,
    type      text NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX parked_tasks_type ON parked_tasks (type);
