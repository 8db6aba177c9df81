-- Request metrics summed across instances. On Spin every request runs in a
-- fresh instance, so each one adds its counts here and GET /metrics reads the
-- sums. Statements are idempotent: instances may migrate concurrently.
CREATE TABLE IF NOT EXISTS http_metric_totals (
    kind TEXT NOT NULL,       -- 'requests', 'bucket', 'sum' or 'count'
    method TEXT NOT NULL,
    route TEXT NOT NULL,
    slot INTEGER NOT NULL,    -- status for 'requests', bucket index for 'bucket', else 0
    value REAL NOT NULL,
    PRIMARY KEY (kind, method, route, slot)
) WITHOUT ROWID;
