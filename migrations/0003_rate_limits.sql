-- Rate-limit state where instances keep none between requests (Spin): one
-- GCRA theoretical arrival time (Unix microseconds) per key. A row whose
-- TAT has passed is the same as no row; they are swept now and then.
CREATE TABLE IF NOT EXISTS rate_limit_state (
    key TEXT PRIMARY KEY NOT NULL,
    tat INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS rate_limit_state_tat ON rate_limit_state (tat);
