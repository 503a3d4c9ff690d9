-- Snapshots of the write side's in-memory state. Iggy cannot read by key,
-- so the write side folds all of incident-events into memory at start-up; a
-- snapshot (the fold + the offset it reflects) bounds that replay to the
-- events after it. A snapshot is only an optimisation: deleting the row
-- costs a longer start-up, nothing else.
CREATE TABLE write_model_snapshots (
    name        TEXT        PRIMARY KEY,
    -- The code's snapshot format; a snapshot of another format is ignored.
    format      INTEGER     NOT NULL,
    next_offset BIGINT      NOT NULL,
    state       JSONB       NOT NULL,
    taken_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
