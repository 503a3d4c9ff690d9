-- Identity: the one context whose record is not the log. Passwords and
-- refresh tokens are secrets that must be rotatable and deletable, which an
-- immutable log cannot offer; what happens to accounts is still told to the
-- log (topic auth-events) through the outbox below.

CREATE TABLE users (
    id            UUID        PRIMARY KEY,
    -- As typed (trimmed); uniqueness is on the lower-cased form.
    email         TEXT        NOT NULL,
    display_name  TEXT        NOT NULL,
    -- argon2id PHC string; never leaves this table.
    password_hash TEXT        NOT NULL,
    role          TEXT        NOT NULL DEFAULT 'STUDENT'
                  CHECK (role IN ('STUDENT', 'PREFECT', 'PROFESSOR')),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_unique ON users (lower(email));

-- A login session: one chain of refresh tokens. Revoking the session (logout,
-- or reuse of a rotated token) ends every token of the chain.
CREATE TABLE sessions (
    id             UUID        PRIMARY KEY,
    user_id        UUID        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at     TIMESTAMPTZ NOT NULL,
    revoked_at     TIMESTAMPTZ,
    revoked_reason TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Every refresh token ever issued, by SHA-256 of its value (the value itself
-- is only ever known to the client). `rotated_at` set = already exchanged
-- for a new one: presenting it again means it leaked, and the session dies.
CREATE TABLE refresh_tokens (
    token_hash BYTEA       PRIMARY KEY,
    session_id UUID        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    issued_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    rotated_at TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

-- The transactional outbox: an event row commits in the same transaction as
-- the account change it describes, so there is one event per committed
-- change and none for a change that rolled back. The relay appends rows to
-- the log in id order and marks them published.
--
-- Writers take an advisory lock (see src/outbox.rs) before inserting, so ids
-- are assigned in commit order and the relay can never publish a later
-- commit before an earlier one.
CREATE TABLE outbox (
    id           BIGSERIAL   PRIMARY KEY,
    topic        TEXT        NOT NULL,
    event_id     UUID        NOT NULL UNIQUE,
    payload      BYTEA       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
