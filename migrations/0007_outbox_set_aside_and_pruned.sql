-- The outbox relay must never stop for good on one row, and the outbox must
-- not grow forever (src/outbox.rs):
--
-- - A row the relay cannot publish (it names a topic the log does not have)
--   is set aside with its error instead of stopping every row behind it.
--   Operators see set-aside rows in GET /api/admin/outbox.
-- - Published rows are pruned once they are a day old: the log has them.
ALTER TABLE outbox
    ADD COLUMN set_aside_at TIMESTAMPTZ,
    ADD COLUMN error        TEXT;

DROP INDEX outbox_unpublished;
CREATE INDEX outbox_unpublished ON outbox (id)
    WHERE published_at IS NULL AND set_aside_at IS NULL;
CREATE INDEX outbox_published ON outbox (published_at)
    WHERE published_at IS NOT NULL;
