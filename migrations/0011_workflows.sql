-- Workflows (issue 14): DAGs of tasks. Every step is a task; a step whose parents have not all
-- ended waits in the new status `waiting`, with nothing in Redis and no due or outbox row.
--
-- What moves a workflow on is one row trigger on tasks, fired only for workflow steps
-- (`WHEN (NEW.workflow_id IS NOT NULL …)`: for any other task the trigger's condition is false
-- and nothing runs, no event is queued). Being on the table, it acts in the very transaction
-- that changes a step's status, whatever statement does it (an executor's success, an
-- exactly-once handler's commit, the janitor's dead letter, a cancel, a replay): the statements
-- plain tasks use are unchanged, and no path can forget to release or cancel a step's children.
-- `workflow_id` is set at insert and never changes; no index names it (claims and completions
-- stay HOT updates).

ALTER TABLE tasks DROP CONSTRAINT IF EXISTS tasks_status_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_status_check
    CHECK (status IN ('scheduled', 'queued', 'running', 'succeeded', 'retrying', 'dead',
        'cancelled', 'waiting'))
    NOT VALID;  -- every row already has one of the older statuses: no need to read them all

ALTER TABLE tasks ADD COLUMN workflow_id uuid;

-- One row per workflow. Its state is kept by the trigger: `steps_left` counts steps not ended
-- (succeeded, dead or cancelled), `failed_steps` the ended ones that did not succeed; when the
-- last step ends the state is set (cancelled if it was cancelled, else succeeded when no step
-- failed, else failed) with `finished_at`; a replay that brings a step back makes it running
-- again. `counted`: the end was counted in workflows_finished_total.
CREATE TABLE workflows (
    id              uuid PRIMARY KEY,
    name            text,
    idempotency_key text UNIQUE,
    request_hash    bytea,
    state           text NOT NULL DEFAULT 'running'
                        CHECK (state IN ('running', 'succeeded', 'failed', 'cancelled')),
    steps           integer NOT NULL,
    steps_left      integer NOT NULL,
    failed_steps    integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    cancelled_at    timestamptz,
    counted         boolean NOT NULL DEFAULT false
);
-- Listing by state, newest first (ids are time-ordered).
CREATE INDEX workflows_state_id ON workflows (state, id DESC);
-- Ended workflows not yet counted, for the janitor's sweep (those no executor or cancel
-- counted: ended by a task cancel or the janitor's own dead letters).
CREATE INDEX workflows_uncounted ON workflows (id) WHERE finished_at IS NOT NULL AND NOT counted;

-- One row per step: its task, its name in the workflow, how many of its parents have not yet
-- let it go (`parents_left`: decremented once per parent, by the edge's `resolved` flag),
-- what it does when a parent fails, and why it was cancelled (`upstream_failed`: a replay of
-- the parent brings it back; `workflow_cancelled`).
CREATE TABLE workflow_steps (
    task_id           uuid PRIMARY KEY,
    workflow_id       uuid NOT NULL,
    name              text NOT NULL,
    position          integer NOT NULL,
    parents_left      integer NOT NULL,
    on_parent_failure text NOT NULL DEFAULT 'cancel'
                          CHECK (on_parent_failure IN ('cancel', 'run')),
    cancel_reason     text,
    UNIQUE (workflow_id, name)
);

-- Parent → child. `resolved`: this parent has let the child go (succeeded, or failed for a
-- child that runs anyway): set once, so a parent counts once against its child whatever
-- happens to it later (a replayed dead parent that then succeeds).
CREATE TABLE workflow_edges (
    parent   uuid NOT NULL,
    child    uuid NOT NULL,
    resolved boolean NOT NULL DEFAULT false,
    PRIMARY KEY (parent, child)
);
CREATE INDEX workflow_edges_child ON workflow_edges (child);

-- The trigger's body. Cascades (cancelling the descendants of a failed step, re-arming them
-- after its replay) go level by level in a loop of the outermost firing, never by one firing
-- per level (a chain of WORKFLOW_MAX_STEPS steps would exhaust Postgres's stack): the firings
-- those updates cause themselves (pg_trigger_depth() > 1) only keep the workflow's counters.
CREATE FUNCTION workflow_step_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ended_old boolean := OLD.status IN ('succeeded', 'dead', 'cancelled');
    ended_new boolean := NEW.status IN ('succeeded', 'dead', 'cancelled');
    failed_old boolean := OLD.status IN ('dead', 'cancelled');
    failed_new boolean := NEW.status IN ('dead', 'cancelled');
    released uuid[];
    freed_now uuid[];
    level uuid[];
BEGIN
    -- The workflow's counters and state.
    IF ended_new <> ended_old OR failed_new <> failed_old THEN
        UPDATE workflows w SET
            steps_left = w.steps_left - (ended_new::int - ended_old::int),
            failed_steps = w.failed_steps + (failed_new::int - failed_old::int),
            finished_at = CASE WHEN w.steps_left - (ended_new::int - ended_old::int) = 0
                THEN now() END,
            state = CASE WHEN w.steps_left - (ended_new::int - ended_old::int) > 0 THEN 'running'
                WHEN w.cancelled_at IS NOT NULL THEN 'cancelled'
                WHEN w.failed_steps + (failed_new::int - failed_old::int) = 0 THEN 'succeeded'
                ELSE 'failed' END,
            counted = CASE WHEN w.steps_left - (ended_new::int - ended_old::int) = 0
                THEN w.counted ELSE false END
        WHERE w.id = NEW.workflow_id;
    END IF;
    IF pg_trigger_depth() > 1 THEN
        RETURN NULL;
    END IF;

    IF NEW.status = 'succeeded' THEN
        -- Let the children go. The decrement is one UPDATE of the child's row (row-locked),
        -- so of several parents succeeding at once in concurrent transactions exactly one
        -- sees zero; the edge's flag makes a parent count once, whatever happens to it later.
        WITH edges AS (
            UPDATE workflow_edges e SET resolved = true
            WHERE e.parent = NEW.id AND NOT e.resolved
            RETURNING e.child
        ), counted AS (
            UPDATE workflow_steps s SET parents_left = s.parents_left - 1
            FROM edges WHERE s.task_id = edges.child
            RETURNING s.task_id, s.parents_left
        ), freed AS (
            UPDATE tasks t SET status = 'queued', queued_at = now(), updated_at = now()
            FROM counted c
            WHERE t.id = c.task_id AND c.parents_left = 0 AND t.status = 'waiting'
            RETURNING t.id
        )
        SELECT array_agg(id) INTO released FROM freed;
    END IF;

    IF failed_new AND NOT ended_old THEN
        -- A failed step, then each level of the descendants its failure cancels: the children
        -- that run anyway are let go (like after a success), the others cancelled.
        level := ARRAY[NEW.id];
        WHILE level IS NOT NULL LOOP
            WITH edges AS (
                UPDATE workflow_edges e SET resolved = true
                FROM workflow_steps s
                WHERE e.parent = ANY(level) AND NOT e.resolved AND s.task_id = e.child
                    AND s.on_parent_failure = 'run'
                RETURNING e.child
            ), per_child AS (
                SELECT child, count(*) AS n FROM edges GROUP BY child
            ), counted AS (
                UPDATE workflow_steps s SET parents_left = s.parents_left - p.n
                FROM per_child p WHERE s.task_id = p.child
                RETURNING s.task_id, s.parents_left
            ), freed AS (
                UPDATE tasks t SET status = 'queued', queued_at = now(), updated_at = now()
                FROM counted c
                WHERE t.id = c.task_id AND c.parents_left = 0 AND t.status = 'waiting'
                RETURNING t.id
            )
            SELECT array_agg(id) INTO freed_now FROM freed;
            released := released || freed_now;
            WITH gone AS (
                UPDATE tasks t SET status = 'cancelled', finished_at = now(), updated_at = now(),
                    last_error = jsonb_build_object('type', 'UpstreamFailed',
                        'message', format('an upstream step of workflow %s failed (task %s is %s)',
                            NEW.workflow_id, NEW.id, NEW.status))
                FROM workflow_edges e, workflow_steps s
                WHERE e.parent = ANY(level) AND s.task_id = e.child AND t.id = e.child
                    AND s.on_parent_failure = 'cancel' AND t.status = 'waiting'
                RETURNING t.id
            ), marked AS (
                UPDATE workflow_steps s SET cancel_reason = 'upstream_failed'
                FROM gone WHERE s.task_id = gone.id
            )
            SELECT array_agg(id) INTO level FROM gone;
            IF level IS NOT NULL THEN
                PERFORM pg_notify('taskstream_done', CASE WHEN cardinality(level) > 200 THEN '*'
                    ELSE array_to_string(level, ',') END);
            END IF;
        END LOOP;
    END IF;

    IF released IS NOT NULL THEN
        -- Published after the commit by the watcher's outbox drain (woken by the notification,
        -- delivered on commit); a crash before that leaves the row, which the drain or the
        -- repair publishes later.
        INSERT INTO outbox (task_ids, source) VALUES (released, 'enqueue');
        PERFORM pg_notify('taskstream_outbox', '');
    END IF;

    IF failed_old AND NOT ended_new THEN
        -- Brought back (a replay of a dead step): level by level, the descendants its failure
        -- cancelled wait again, unless another of their parents failed too.
        level := ARRAY[NEW.id];
        WHILE level IS NOT NULL LOOP
            UPDATE workflow_steps SET cancel_reason = NULL WHERE task_id = ANY(level);
            WITH back AS (
                UPDATE tasks t SET status = 'waiting', finished_at = NULL, updated_at = now(),
                    last_error = NULL
                FROM workflow_edges e, workflow_steps s
                WHERE e.parent = ANY(level) AND s.task_id = e.child AND t.id = e.child
                    AND t.status = 'cancelled' AND s.cancel_reason = 'upstream_failed'
                    AND NOT EXISTS (
                        SELECT 1 FROM workflow_edges o JOIN tasks p ON p.id = o.parent
                        WHERE o.child = e.child AND NOT o.resolved
                            AND p.status IN ('dead', 'cancelled'))
                RETURNING t.id
            )
            SELECT array_agg(id) INTO level FROM back;
        END LOOP;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER tasks_workflow_step AFTER UPDATE OF status ON tasks
    FOR EACH ROW WHEN (NEW.workflow_id IS NOT NULL AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION workflow_step_changed();
