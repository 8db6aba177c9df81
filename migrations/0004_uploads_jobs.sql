-- Uploads, idempotency keys of creating POSTs, and the job outbox of
-- platforms without a queue service (Spin). Times are Unix seconds.

CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    -- 'pending' until the content is stored and verified, then 'stored'.
    status TEXT NOT NULL CHECK (status IN ('pending', 'stored')),
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS uploads_tenant ON uploads (tenant_id, id);

-- One row per (tenant, route, Idempotency-Key): the request's digest and,
-- once answered, the answer. status 0 marks a request still in flight.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    tenant_id TEXT NOT NULL,
    route TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    body BLOB,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, route, key)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS idempotency_keys_created ON idempotency_keys (created_at);

-- Jobs waiting to be processed where there is no queue service: drained by
-- a scheduler-called endpoint with a lease (visibility timeout).
CREATE TABLE IF NOT EXISTS job_outbox (
    id TEXT PRIMARY KEY NOT NULL,
    queue TEXT NOT NULL,
    envelope TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    available_at INTEGER NOT NULL,
    enqueued_at INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS job_outbox_due ON job_outbox (queue, available_at);
