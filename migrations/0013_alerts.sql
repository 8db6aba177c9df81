-- The alert inbox (core/src/ops/alerts.rs): what Alertmanager posted to
-- POST /v1/ops/alerts, one row per alert fingerprint of a tenant (the
-- operator's). A repeat of the same occurrence (status and starts_at)
-- updates received_at and receipts only; a change of either is a
-- transition (changed_at, changes + 1: notification ids derive from it),
-- which notifies the operator's admins. Labels
-- and annotations are JSON objects of strings. Times are Unix seconds.
-- Resolved alerts are deleted ALERT_RETENTION_SECS after they resolved, and
-- firing ones nobody resent for as long.
-- Idempotent: Spin instances migrate concurrently.
CREATE TABLE IF NOT EXISTS alerts (
    tenant_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    alertname TEXT NOT NULL,
    severity TEXT,
    status TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    starts_at INTEGER NOT NULL,
    ends_at INTEGER,
    generator_url TEXT,
    received_at INTEGER NOT NULL,
    changed_at INTEGER NOT NULL,
    receipts INTEGER NOT NULL DEFAULT 1,
    changes INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant_id, fingerprint)
) WITHOUT ROWID;

-- The list, newest change first, with a (changed_at, fingerprint) cursor;
-- and the same per state (and the retention's delete of old resolved ones).
CREATE INDEX IF NOT EXISTS alerts_changed ON alerts (tenant_id, changed_at, fingerprint);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (tenant_id, status, changed_at, fingerprint);
-- Firing alerts nobody resent, for the retention.
CREATE INDEX IF NOT EXISTS alerts_received ON alerts (tenant_id, received_at);
