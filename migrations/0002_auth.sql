-- Tenants, users, refresh tokens and API keys.
--
-- Every tenant-scoped query has an index that serves it; the core's
-- `auth::store` tests run EXPLAIN QUERY PLAN on each hot query and fail on a
-- full table scan. Times are Unix seconds.

-- A tenant's id is its slug (the `X-Tenant-ID` value and the token's
-- `tenant` claim). Exactly one tenant is the operator: the bootstrapped one,
-- whose admins may grant platform scopes such as `metrics:read`.
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    operator INTEGER NOT NULL DEFAULT 0 CHECK (operator IN (0, 1)),
    created_at INTEGER NOT NULL
);

CREATE UNIQUE INDEX IF NOT EXISTS tenants_single_operator ON tenants (operator) WHERE operator = 1;

CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    email TEXT NOT NULL,
    -- PHC string: $argon2id$v=19$m=…,t=…,p=…$salt$hash
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'user')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Serves login (tenant + email) and enforces one account per email per tenant.
CREATE UNIQUE INDEX IF NOT EXISTS users_tenant_email ON users (tenant_id, email);
-- Serves the tenant's user list in id order (cursor pagination) and admin counts.
CREATE INDEX IF NOT EXISTS users_tenant_id ON users (tenant_id, id);
CREATE INDEX IF NOT EXISTS users_tenant_role ON users (tenant_id, role);

-- Refresh tokens are stored only as SHA-256 digests. Each use rotates the
-- token within its family; presenting a rotated token revokes the family.
CREATE TABLE IF NOT EXISTS refresh_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    family_id TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    rotated_at INTEGER,
    revoked_at INTEGER
);

CREATE UNIQUE INDEX IF NOT EXISTS refresh_tokens_hash ON refresh_tokens (token_hash);
CREATE INDEX IF NOT EXISTS refresh_tokens_family ON refresh_tokens (tenant_id, family_id);
CREATE INDEX IF NOT EXISTS refresh_tokens_user ON refresh_tokens (tenant_id, user_id);

-- API keys for machine clients, stored only as SHA-256 digests; scopes are
-- space-separated (e.g. "metrics:read metrics:push").
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    key_hash TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE UNIQUE INDEX IF NOT EXISTS api_keys_hash ON api_keys (key_hash);
CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys (tenant_id, id);
