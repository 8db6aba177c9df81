-- The operator console's history (core/src/ops/history.rs): one snapshot of
-- the dashboard's series per minute that had traffic, as JSON (cumulative
-- request counts by status class, latency buckets, and per queue its depth,
-- active jobs, processed and failed counts and lag buckets). Kept where the
-- metrics aggregate lives (the Durable Object's SQLite on Workers, the
-- application's SQLite on Spin) for ops::history::RETENTION_MINUTES.
-- Idempotent: Spin instances migrate concurrently.
CREATE TABLE IF NOT EXISTS metric_minutes (
    -- Unix seconds / 60: one row per minute, the first writer wins.
    minute INTEGER PRIMARY KEY NOT NULL,
    point TEXT NOT NULL
);
