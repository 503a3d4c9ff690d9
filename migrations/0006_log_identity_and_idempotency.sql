-- Issue: exactly once under retries and crashes.

-- The embedded log's identity (see `LogId` in core/src/log/mod.rs): created
-- once with the log, never changed. `log migrate` copies it to Iggy, so a
-- database whose projections were built from this log keeps working there.
CREATE TABLE event_log_identity (
    -- One row, ever.
    singleton  BOOLEAN     PRIMARY KEY DEFAULT true CHECK (singleton),
    log_id     UUID        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO event_log_identity (log_id) VALUES (gen_random_uuid());

-- Which log each projector's offset belongs to. An offset is meaningless on
-- another log: a projector whose row names another log refuses to run, and
-- its queries answer 503, until it is rebuilt (or the log migrated). NULL
-- on rows written before this column existed: the first step adopts the
-- log it runs on.
ALTER TABLE projector_offsets ADD COLUMN log_id UUID;

-- Incidents are listed newest first by the offset of their
-- incident.created: ids derived from idempotency keys carry no time, so
-- they no longer sort by creation. The read model is a projection: rather
-- than guess the offsets of rows already there, it is emptied and replayed
-- from offset 0 by the running projector.
ALTER TABLE read_incidents ADD COLUMN created_offset BIGINT NOT NULL DEFAULT 0;
ALTER TABLE read_incidents ALTER COLUMN created_offset DROP DEFAULT;
DROP INDEX read_incidents_newest;
CREATE INDEX read_incidents_newest ON read_incidents (created_offset DESC) WHERE NOT deleted;
TRUNCATE read_incidents, read_comments;
UPDATE projector_offsets SET next_offset = 0 WHERE projector = 'read-model';

-- A projector now recognises copies of an event by the version rule (incident
-- events) or by the event id (the audit log), not by a table of every event
-- id it has seen: a copy that was voided must not hide a later copy that is
-- accepted. The audit log therefore keys its rows by event id as well.
CREATE UNIQUE INDEX audit_log_event_id ON audit_log (event_id);
DROP TABLE projector_applied_events;
