-- Limits (issue 13): per-tenant submission rate, tasks in flight and payload size, their fair
-- share, and cluster-wide concurrency caps per task type and per tenant.

-- A tenant's limits; a null limit is no limit. Ingest caches these for LIMITS_CACHE_MS.
CREATE TABLE tenants (
    name              text PRIMARY KEY,
    rate_per_s        double precision CHECK (rate_per_s > 0),
    burst             integer CHECK (burst >= 1),
    max_in_flight     bigint CHECK (max_in_flight >= 1),
    max_payload_bytes integer CHECK (max_payload_bytes >= 1),
    weight            integer NOT NULL DEFAULT 1 CHECK (weight BETWEEN 1 AND 1000),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Tasks in flight (scheduled, queued, running, retrying) per tenant, for the tenants with a
-- quota. A task submitted while its tenant has a quota is `counted`: ingest checks and adds it
-- here in its insert's transaction, and the triggers below take it off when it ends (any
-- statement that moves it to succeeded, dead or cancelled, or deletes it unfinished) and put
-- it back when a replay revives it. The triggers' WHEN clause is all an uncounted task costs
-- (one boolean test per updated row, evaluated before any trigger call): no index, no row
-- touched. `counted` never changes after the insert but for a quota set later (which marks
-- the tenant's tasks in flight then), so it breaks no HOT update either.
ALTER TABLE tasks ADD COLUMN counted boolean NOT NULL DEFAULT false;

CREATE TABLE tenant_usage (
    tenant    text PRIMARY KEY,
    in_flight bigint NOT NULL DEFAULT 0
);

CREATE FUNCTION tenant_usage_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE tenant_usage SET in_flight = in_flight - 1 WHERE tenant = OLD.tenant;
    ELSE
        UPDATE tenant_usage
        SET in_flight = in_flight
            + (NEW.counted AND NEW.status NOT IN ('succeeded', 'dead', 'cancelled'))::int
            - (OLD.counted AND OLD.status NOT IN ('succeeded', 'dead', 'cancelled'))::int
        WHERE tenant = NEW.tenant;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER tasks_in_flight_changed AFTER UPDATE OF status, counted ON tasks
    FOR EACH ROW
    WHEN ((NEW.counted AND NEW.status NOT IN ('succeeded', 'dead', 'cancelled'))
        IS DISTINCT FROM (OLD.counted AND OLD.status NOT IN ('succeeded', 'dead', 'cancelled')))
    EXECUTE FUNCTION tenant_usage_changed();
CREATE TRIGGER tasks_in_flight_deleted AFTER DELETE ON tasks
    FOR EACH ROW
    WHEN (OLD.counted AND OLD.status NOT IN ('succeeded', 'dead', 'cancelled'))
    EXECUTE FUNCTION tenant_usage_changed();

-- Cluster-wide caps on tasks running at once: per task type (`type`) or per tenant (`tenant`).
-- Executors poll this (LIMITS_POLL_MS); the slots themselves are in Redis.
CREATE TABLE concurrency_limits (
    kind        text NOT NULL CHECK (kind IN ('type', 'tenant')),
    name        text NOT NULL,
    max_running integer NOT NULL CHECK (max_running >= 1),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, name)
);

-- Tasks that were delivered while their type's or tenant's concurrency cap was full: still
-- queued at the same attempt (nothing claimed, no attempt used), their entry acknowledged,
-- waiting on the cap (kind, name) that was full. The watcher's unwait role re-publishes as
-- many as the cap has free slots, oldest first.
CREATE TABLE limit_waits (
    task_id   uuid PRIMARY KEY,
    attempt   integer NOT NULL,
    priority  text NOT NULL,
    kind      text NOT NULL,
    name      text NOT NULL,
    waited_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX limit_waits_cap ON limit_waits (kind, name, waited_at);

-- Fair shares (FAIR_SHARE_ENTRIES): a tenant has at most that many entries (times its weight)
-- on the streams at once; the tasks submitted beyond it wait here, still queued at their
-- attempt with no entry, and the watcher's fair role publishes them, oldest first, as the
-- tenant's entries are read. So one tenant's backlog sits in Postgres, and another tenant's
-- new task is behind at most the others' share, not behind the whole backlog.
CREATE TABLE fair_held (
    task_id       uuid PRIMARY KEY,
    attempt       integer NOT NULL,
    priority      text NOT NULL,
    tenant        text NOT NULL,
    trace_context text,
    held_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fair_held_tenant ON fair_held (tenant, held_at);
