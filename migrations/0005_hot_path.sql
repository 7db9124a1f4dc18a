-- The hot path writes no index it does not need.
--
-- Every claim and completion changed `status`, which the in-flight index named, so no update
-- of a task row could be HOT: each wrote a new index entry in every index of the table and
-- left dead ones for vacuum. With only the primary key indexed (no column a claim or a
-- completion changes), and room left on each page for the new row versions, they are HOT.
DROP INDEX IF EXISTS tasks_in_flight;
ALTER TABLE tasks SET (fillfactor = 50);

-- What finds the tasks a lost entry left stranded, now that no index does: every statement
-- that makes tasks queued (an insert, a move of due rows, a replay, a release) writes one
-- outbox row naming them, in its own statement; the process that publishes their entries
-- deletes the row once Redis has them. A row still here after OUTBOX_GRACE_MS belongs to a
-- publisher that died (or a Redis that refused): the watcher re-sends its queued tasks and
-- deletes it. (A total loss of Redis re-sends every queued task instead; a slow sweep over
-- the tasks covers what nothing else would see.)
CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    task_ids   uuid[] NOT NULL
);
