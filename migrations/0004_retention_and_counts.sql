-- Retention and cheap gauges: nothing grows without bound, and no maintenance pass costs more
-- as history grows.

-- Where each maintenance walk stands (retention walks the tasks in id order: ids are
-- time-ordered, so the walk reads only rows it has not read before).
CREATE TABLE maintenance_cursors (
    name     text PRIMARY KEY,
    position uuid NOT NULL
);

-- Tasks the retention walk passed but could not delete yet (still running, waiting, or
-- finished too recently): looked at again when they may be due, by their own index.
CREATE TABLE retention_later (
    task_id    uuid PRIMARY KEY,
    recheck_at timestamptz NOT NULL
);
CREATE INDEX retention_later_recheck ON retention_later (recheck_at);

-- Expiring idempotency keys and dead entries in bounded batches, oldest first.
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
CREATE INDEX dead_entries_dead_at ON dead_entries (dead_at);

-- Per priority and kind (retry, delayed, dead), changes in how many due rows and dead letters
-- there are: appended by statement triggers (no row contended by concurrent writers), summed
-- and compacted by the janitor's gauges. A gauge never counts the tables themselves.
CREATE TABLE queue_counts (
    priority text NOT NULL,
    kind     text NOT NULL,
    n        bigint NOT NULL
);
INSERT INTO queue_counts SELECT priority, kind, count(*) FROM due GROUP BY 1, 2;
INSERT INTO queue_counts SELECT priority, 'dead', count(*) FROM dead_letters GROUP BY 1;

CREATE FUNCTION queue_counts_due_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO queue_counts SELECT priority, kind, count(*) FROM new_rows GROUP BY 1, 2;
    RETURN NULL;
END $$;
CREATE FUNCTION queue_counts_due_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO queue_counts SELECT priority, kind, -count(*) FROM old_rows GROUP BY 1, 2;
    RETURN NULL;
END $$;
CREATE FUNCTION queue_counts_dead_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO queue_counts SELECT priority, 'dead', count(*) FROM new_rows GROUP BY 1;
    RETURN NULL;
END $$;
CREATE FUNCTION queue_counts_dead_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO queue_counts SELECT priority, 'dead', -count(*) FROM old_rows GROUP BY 1;
    RETURN NULL;
END $$;
CREATE TRIGGER due_added AFTER INSERT ON due REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queue_counts_due_added();
CREATE TRIGGER due_removed AFTER DELETE ON due REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queue_counts_due_removed();
CREATE TRIGGER dead_added AFTER INSERT ON dead_letters REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queue_counts_dead_added();
CREATE TRIGGER dead_removed AFTER DELETE ON dead_letters REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION queue_counts_dead_removed();
