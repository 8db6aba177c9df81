-- Load-test baselines (core/src/ops/baselines.rs): the summary of a k6 run
-- per tenant, branch, scenario and build, as PUT /v1/ops/baselines/{branch}
-- stored it (JSON: error_rate, rate, routes, jobs). A tenant keeps the 500
-- most recently recorded. Times are Unix seconds.
-- Idempotent: Spin instances migrate concurrently.
CREATE TABLE IF NOT EXISTS baselines (
    tenant_id TEXT NOT NULL,
    branch TEXT NOT NULL,
    scenario TEXT NOT NULL,
    build TEXT NOT NULL,
    commit_sha TEXT,
    summary TEXT NOT NULL,
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, branch, scenario, build)
) WITHOUT ROWID;

-- The trim to the most recently recorded.
CREATE INDEX IF NOT EXISTS baselines_recorded ON baselines (tenant_id, recorded_at);
