-- The notification pusher reads the rows a batch of events produced
-- (`WHERE event_id = ANY(...)`, src/realtime/notifications.rs): without
-- this index, every push scanned the whole table.
CREATE INDEX notifications_by_event ON notifications (event_id);
