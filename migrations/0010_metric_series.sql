-- Metrics aggregated across instances and pushers (core/src/aggregate.rs).
-- One row per sample series of a source: 'api' (the instances' own HTTP
-- metrics, flushed as deltas), 'web' (browser Web Vitals), or
-- 'push:<grouping key>' (a Pushgateway-style group). Counters, histograms
-- and untyped samples are summed across sources, gauges keep the latest.
-- Times are Unix seconds. Idempotent: Spin instances migrate concurrently.
CREATE TABLE IF NOT EXISTS metric_series (
    source TEXT NOT NULL,
    -- Which exposition serves it: 'api' (GET /metrics) or 'web'
    -- (GET /api/metrics/prometheus).
    scope TEXT NOT NULL,
    family TEXT NOT NULL,
    kind TEXT NOT NULL,
    help TEXT,
    name TEXT NOT NULL,
    -- The sample's labels in exposition form, sorted, without `le`.
    labels TEXT NOT NULL,
    -- A histogram bucket's bound ('' for every other sample).
    le TEXT NOT NULL,
    value REAL NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (source, name, labels, le)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS metric_series_scope ON metric_series (scope, family);
CREATE INDEX IF NOT EXISTS metric_series_age ON metric_series (updated_at);
