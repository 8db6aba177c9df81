-- Background job processing (queue consumers on Workers, the outbox drain
-- on Spin). Times are Unix seconds. Every statement is idempotent: Spin
-- instances may migrate concurrently.

-- The event id of every applied job: a redelivery finds it and does
-- nothing. Written in the same batch as the job's own writes.
CREATE TABLE IF NOT EXISTS processed_jobs (
    event_id TEXT PRIMARY KEY NOT NULL,
    queue TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    processed_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS processed_jobs_age ON processed_jobs (processed_at);

-- Jobs given up on (permanent failure or retries exhausted), parked for an
-- operator: on Workers written by the dead-letter queues' consumer, on
-- Spin by the drain. One row per event.
CREATE TABLE IF NOT EXISTS dead_letters (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL,
    queue TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    envelope TEXT NOT NULL,
    -- '4xx', '5xx' or 'timeout'; 'unknown' when the platform gave up.
    class TEXT NOT NULL,
    reason TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    dead_at INTEGER NOT NULL
);

CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_event ON dead_letters (event_id);
CREATE INDEX IF NOT EXISTS dead_letters_tenant ON dead_letters (tenant_id, id);

-- The drain leases due jobs by moving available_at past the lease.
CREATE INDEX IF NOT EXISTS job_outbox_available ON job_outbox (available_at);

-- What the uploads consumer found when it re-read a stored object:
-- 'ready' (size and SHA-256 match the declaration) or 'invalid'.
CREATE TABLE IF NOT EXISTS upload_checks (
    upload_id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL,
    result TEXT NOT NULL CHECK (result IN ('ready', 'invalid')),
    checked_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Worker metrics summed across instances, per queue:
-- kind 'processed' (slot: 0 ack, 1 retry, 2 dead_letter), 'errors'
-- (slot: 0 4xx, 1 5xx, 2 timeout), 'enqueued', 'active' (+n at a batch's
-- start, -n at its end), 'lag_bucket' / 'duration_bucket' (slot: bucket
-- index), 'lag_sum', 'duration_sum' and 'count'.
CREATE TABLE IF NOT EXISTS worker_metric_totals (
    queue TEXT NOT NULL,
    kind TEXT NOT NULL,
    slot INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (queue, kind, slot)
) WITHOUT ROWID;
