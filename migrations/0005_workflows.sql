-- Workflows: a trigger (manual, or an event type pattern) and ordered steps
-- (JSON), and their runs with per-step results. Times are Unix seconds.

CREATE TABLE IF NOT EXISTS workflows (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    -- 'manual', or an event type pattern such as 'meta.message.received'
    -- or 'meta.*'.
    trigger TEXT NOT NULL,
    steps TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS workflows_tenant ON workflows (tenant_id, id);
CREATE INDEX IF NOT EXISTS workflows_tenant_trigger ON workflows (tenant_id, trigger);

CREATE TABLE IF NOT EXISTS workflow_runs (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    -- 'requested', 'running', 'succeeded' or 'failed'.
    status TEXT NOT NULL,
    -- JSON: {"type":"manual"} or {"type":"event","event_id":…,"event_type":…}.
    cause TEXT NOT NULL,
    input TEXT NOT NULL,
    -- JSON array, one entry per step: {"status":…, "result":…}.
    step_results TEXT NOT NULL,
    requested_by TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS workflow_runs_workflow ON workflow_runs (tenant_id, workflow_id, id);
