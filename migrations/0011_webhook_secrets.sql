-- Each tenant's webhook signing secret (docs/adr/0010-per-tenant-webhook-secrets.md).
--
-- The secret is derived, never stored:
--   whsec_ + hex(HMAC-SHA256(WEBHOOK_SIGNING_SECRET,
--                            "tepi-webhook-secret-v1\n" + tenant + "\n" + salt))
-- so this table alone reveals no secret. `salt` is 32 random hex digits;
-- a rotation moves it to `previous_salt`, which still signs until
-- `previous_until` (Unix seconds). `created_at` is when the current salt
-- was made (for a tenant salted by the backfill below: when the tenant was). Every statement is idempotent: instances migrate concurrently.
CREATE TABLE IF NOT EXISTS webhook_secrets (
    tenant_id TEXT PRIMARY KEY NOT NULL REFERENCES tenants (id),
    salt TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    previous_salt TEXT,
    previous_until INTEGER
);

-- Tenants created before this migration get a salt too. Nobody has seen
-- their secret: their admins rotate (POST /v1/webhook-secret/rotate) to
-- be shown one, and until then deliveries are signed with it.
INSERT OR IGNORE INTO webhook_secrets (tenant_id, salt, created_at, previous_salt, previous_until)
SELECT id, lower(hex(randomblob(16))), created_at, NULL, NULL FROM tenants;
