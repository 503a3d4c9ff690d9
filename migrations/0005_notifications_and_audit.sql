-- Notifications: written by the notifications projector from
-- incident-events. It keeps its own small view of incidents (reporter and
-- version) so it depends on no other projector, and applies the version
-- rule so a command that lost a race notifies nobody.
CREATE TABLE notification_incidents (
    id          UUID   PRIMARY KEY,
    reported_by UUID   NOT NULL,
    title       TEXT   NOT NULL,
    version     BIGINT NOT NULL
);

CREATE TABLE notifications (
    -- Derived from (event id, recipient): replaying the log recreates the
    -- same ids, so a rebuild can never notify anyone twice.
    id          UUID        PRIMARY KEY,
    user_id     UUID        NOT NULL,
    kind        TEXT        NOT NULL,
    incident_id UUID        NOT NULL,
    event_id    UUID        NOT NULL,
    message     TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    read_at     TIMESTAMPTZ
);
CREATE INDEX notifications_by_user ON notifications (user_id, created_at DESC, id DESC);

-- The audit log: auth-events as rows a professor can filter.
CREATE TABLE audit_log (
    log_offset  BIGINT      PRIMARY KEY,
    event_id    UUID        NOT NULL,
    event_type  TEXT        NOT NULL,
    user_id     UUID,
    data        JSONB       NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX audit_log_by_user ON audit_log (user_id, log_offset DESC);
CREATE INDEX audit_log_by_type ON audit_log (event_type, log_offset DESC);
