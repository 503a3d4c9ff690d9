-- The embedded event log: the same model as Apache Iggy (stream
-- marauders-map, topics, one partition each, offsets from 0) kept in
-- PostgreSQL, for machines without an Iggy server. With IGGY_URL set these
-- tables stay empty.

-- Each row is one message. Payloads are raw bytes, exactly as Iggy stores
-- them: the log does not care whether they are valid events (consumers do).
CREATE TABLE event_log (
    topic        TEXT        NOT NULL,
    partition_id INTEGER     NOT NULL DEFAULT 0,
    log_offset   BIGINT      NOT NULL CHECK (log_offset >= 0),
    message_id   UUID        NOT NULL,
    payload      BYTEA       NOT NULL CHECK (octet_length(payload) > 0),
    appended_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition_id, log_offset)
);

-- The next offset of each topic's partition. An append locks this row
-- (UPDATE ... RETURNING) for the rest of its transaction, which is what makes
-- concurrent appenders take turns: offsets are gapless, assigned in commit
-- order, and a reader never sees offset N+1 before N.
CREATE TABLE event_log_heads (
    topic        TEXT    NOT NULL,
    partition_id INTEGER NOT NULL DEFAULT 0,
    next_offset  BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (topic, partition_id)
);

INSERT INTO event_log_heads (topic) VALUES
    ('incident-events'),
    ('presence-events'),
    ('auth-events');

-- Where each named consumer resumes (Iggy's consumer offsets). Stores the
-- next offset to read, so "processed 0, 1, 2" is stored as 3.
CREATE TABLE event_log_consumer_offsets (
    consumer     TEXT        NOT NULL,
    topic        TEXT        NOT NULL,
    partition_id INTEGER     NOT NULL DEFAULT 0,
    next_offset  BIGINT      NOT NULL CHECK (next_offset >= 0),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition_id)
);
