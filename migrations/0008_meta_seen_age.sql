-- Serves the occasional sweep of Meta item ids older than Meta's retry
-- window (core/src/meta_events.rs keeps them 7 days).
CREATE INDEX IF NOT EXISTS meta_seen_age ON meta_seen (seen_at);
