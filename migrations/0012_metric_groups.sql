-- Pushed groups of the metrics aggregate (core/src/metrics/aggregate.rs):
-- which pusher (API key or user id) wrote each group last, so that the
-- budgets per pusher (PUSH_MAX_PUSHER_GROUPS, PUSH_MAX_PUSHER_SERIES) can
-- count its groups. A group's series are the metric_series rows of its
-- source. Expires with them (METRICS_TTL_SECS after its last push).
-- Idempotent: Spin instances migrate concurrently.
CREATE TABLE IF NOT EXISTS metric_groups (
    source TEXT PRIMARY KEY NOT NULL,
    pusher TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS metric_groups_pusher ON metric_groups (pusher);
CREATE INDEX IF NOT EXISTS metric_groups_age ON metric_groups (updated_at);
