-- The read side. Each projector keeps its own offset per topic, in the same
-- transaction as the changes it makes, so a crash at any moment followed by
-- a restart neither loses nor double-applies an event.
CREATE TABLE projector_offsets (
    projector   TEXT        NOT NULL,
    topic       TEXT        NOT NULL,
    next_offset BIGINT      NOT NULL DEFAULT 0 CHECK (next_offset >= 0),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (projector, topic)
);

-- Event ids a projector has applied: a message the log holds twice (the
-- outbox relay may re-send after a crash) takes effect once.
CREATE TABLE projector_applied_events (
    projector TEXT NOT NULL,
    event_id  UUID NOT NULL,
    PRIMARY KEY (projector, event_id)
);

-- Messages a projector could not decode (not JSON, unknown type, missing
-- fields): recorded for a person to read, then skipped.
CREATE TABLE dead_letters (
    id         BIGSERIAL   PRIMARY KEY,
    projector  TEXT        NOT NULL,
    topic      TEXT        NOT NULL,
    log_offset BIGINT      NOT NULL,
    error      TEXT        NOT NULL,
    payload    BYTEA       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (projector, topic, log_offset)
);

-- The read model: incidents and comments as the queries need them. Filled
-- only by the read-model projector, with the same version rule as the write
-- side's fold (an event counts only if its version is the current + 1).
CREATE TABLE read_incidents (
    id          UUID        PRIMARY KEY,
    title       TEXT        NOT NULL,
    description TEXT,
    severity    TEXT        NOT NULL,
    location    TEXT        NOT NULL,
    status      TEXT        NOT NULL,
    reported_by UUID        NOT NULL,
    assigned_to UUID,
    resolved_by UUID,
    resolution  TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    resolved_at TIMESTAMPTZ,
    version     BIGINT      NOT NULL,
    deleted     BOOLEAN     NOT NULL DEFAULT false
);
-- Newest first, keyset-paginated by id (UUIDv7 ids sort by creation time).
CREATE INDEX read_incidents_newest ON read_incidents (id DESC) WHERE NOT deleted;

CREATE TABLE read_comments (
    id          UUID        PRIMARY KEY,
    incident_id UUID        NOT NULL,
    author_id   UUID        NOT NULL,
    body        TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    log_offset  BIGINT      NOT NULL
);
CREATE INDEX read_comments_by_incident ON read_comments (incident_id, log_offset);
