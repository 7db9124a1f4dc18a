-- Stream entries that could not be decoded: kept durably with their raw fields, so an
-- operator can see them, instead of looping through reclaims or vanishing.
CREATE TABLE dead_entries (
    priority text NOT NULL,
    entry_id text NOT NULL,
    fields   jsonb NOT NULL,
    reason   text NOT NULL,
    dead_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (priority, entry_id)
);
