//! The auth tables (`migrations/0002_auth.sql`) behind the `Sql` port.
//!
//! Every statement that reads or changes tenant data names the tenant in its
//! `WHERE` clause; the only lookups without one go by a secret's digest,
//! which identifies exactly one row of one tenant. `HOT_QUERIES` lists the
//! statements requests run, and a test checks each has an index.

pub const TENANT_COUNT: &str = "SELECT COUNT(*) AS n FROM tenants";
pub const TENANT_OPERATOR: &str = "SELECT operator FROM tenants WHERE id = ?1";
pub const INSERT_TENANT: &str =
    "INSERT INTO tenants (id, name, operator, created_at) VALUES (?1, ?2, ?3, ?4)";

pub const USER_FOR_LOGIN: &str =
    "SELECT id, password_hash, role FROM users WHERE tenant_id = ?1 AND email = ?2";
pub const USER_BY_ID: &str = "SELECT id, email, role, created_at, updated_at FROM users \
     WHERE tenant_id = ?1 AND id = ?2";
pub const USERS_PAGE: &str = "SELECT id, email, role, created_at, updated_at FROM users \
     WHERE tenant_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3";
pub const INSERT_USER: &str = "INSERT INTO users \
     (id, tenant_id, email, password_hash, role, created_at, updated_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)";
/// Changes what is given (NULL keeps a column) unless that would demote the
/// tenant's last admin: one statement, so concurrent demotions cannot both
/// pass the check.
pub const UPDATE_USER: &str = "UPDATE users SET \
     email = COALESCE(?3, email), password_hash = COALESCE(?4, password_hash), \
     role = COALESCE(?5, role), updated_at = ?6 \
     WHERE tenant_id = ?1 AND id = ?2 \
     AND (COALESCE(?5, role) = 'admin' OR role <> 'admin' \
          OR (SELECT COUNT(*) FROM users WHERE tenant_id = ?1 AND role = 'admin') > 1) \
     RETURNING id, email, role, created_at, updated_at";
/// Deletes unless the user is the tenant's last admin.
pub const DELETE_USER: &str = "DELETE FROM users WHERE tenant_id = ?1 AND id = ?2 \
     AND (role <> 'admin' \
          OR (SELECT COUNT(*) FROM users WHERE tenant_id = ?1 AND role = 'admin') > 1) \
     RETURNING id";

pub const INSERT_REFRESH: &str = "INSERT INTO refresh_tokens \
     (id, tenant_id, user_id, family_id, token_hash, created_at, expires_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
pub const REFRESH_BY_HASH: &str = "SELECT id, tenant_id, user_id, family_id, expires_at, \
     rotated_at, revoked_at FROM refresh_tokens WHERE token_hash = ?1";
/// Marks a token used; answers a row only for the one request that wins.
pub const ROTATE_REFRESH: &str = "UPDATE refresh_tokens SET rotated_at = ?2 \
     WHERE id = ?1 AND rotated_at IS NULL AND revoked_at IS NULL RETURNING id";
pub const REVOKE_FAMILY: &str = "UPDATE refresh_tokens SET revoked_at = ?3 \
     WHERE tenant_id = ?1 AND family_id = ?2 AND revoked_at IS NULL";
pub const FAMILY_REVOKED: &str = "SELECT id FROM refresh_tokens \
     WHERE tenant_id = ?1 AND family_id = ?2 AND revoked_at IS NOT NULL LIMIT 1";
pub const REVOKE_USER_SESSIONS: &str = "UPDATE refresh_tokens SET revoked_at = ?3 \
     WHERE tenant_id = ?1 AND user_id = ?2 AND revoked_at IS NULL";

pub const INSERT_API_KEY: &str = "INSERT INTO api_keys \
     (id, tenant_id, name, scopes, key_hash, created_by, created_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
pub const API_KEY_BY_HASH: &str = "SELECT id, tenant_id, scopes FROM api_keys WHERE key_hash = ?1";
pub const API_KEYS_PAGE: &str = "SELECT id, name, scopes, created_by, created_at FROM api_keys \
     WHERE tenant_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3";
pub const DELETE_API_KEY: &str =
    "DELETE FROM api_keys WHERE tenant_id = ?1 AND id = ?2 RETURNING id";

/// A new tenant's webhook secret salt; in the batch that inserts the tenant.
pub const INSERT_WEBHOOK_SECRET: &str =
    "INSERT INTO webhook_secrets (tenant_id, salt, created_at) VALUES (?1, ?2, ?3)";
/// A tenant's webhook secret salts (`auth::webhook_secret::Salts`): one
/// read by primary key, for the admin's metadata and for every delivery.
pub const WEBHOOK_SECRET_BY_TENANT: &str = "SELECT salt, created_at, previous_salt, \
     previous_until FROM webhook_secrets WHERE tenant_id = ?1";
/// Rotates in one statement: the current salt becomes the previous one
/// until ?3, ?2 the current one from ?4. An upsert rather than a plain
/// UPDATE so that a tenant without a row (created by an older build while
/// a rolling deploy migrated) gets one by rotating.
pub const ROTATE_WEBHOOK_SECRET: &str = "INSERT INTO webhook_secrets \
     (tenant_id, salt, created_at, previous_salt, previous_until) VALUES (?1, ?2, ?4, NULL, NULL) \
     ON CONFLICT (tenant_id) DO UPDATE SET previous_salt = webhook_secrets.salt, \
     previous_until = ?3, salt = excluded.salt, created_at = excluded.created_at \
     RETURNING salt, created_at, previous_salt, previous_until";

/// The statements requests run, for the query-plan test.
pub const HOT_QUERIES: &[(&str, &str)] = &[
    ("tenant_operator", TENANT_OPERATOR),
    ("user_for_login", USER_FOR_LOGIN),
    ("user_by_id", USER_BY_ID),
    ("users_page", USERS_PAGE),
    ("update_user", UPDATE_USER),
    ("delete_user", DELETE_USER),
    ("refresh_by_hash", REFRESH_BY_HASH),
    ("rotate_refresh", ROTATE_REFRESH),
    ("revoke_family", REVOKE_FAMILY),
    ("family_revoked", FAMILY_REVOKED),
    ("revoke_user_sessions", REVOKE_USER_SESSIONS),
    ("api_key_by_hash", API_KEY_BY_HASH),
    ("api_keys_page", API_KEYS_PAGE),
    ("delete_api_key", DELETE_API_KEY),
    ("webhook_secret_by_tenant", WEBHOOK_SECRET_BY_TENANT),
];

pub use crate::storage::rows::{Row, atomically, each, first, run};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{Sql, SqlValue};
    use crate::storage::migrate;
    use crate::testing::{SqliteSql, block_on};

    /// The highest `?N` in a statement: how many parameters to bind.
    fn parameter_count(statement: &str) -> usize {
        let bytes = statement.as_bytes();
        let mut max = 0;
        for (i, b) in bytes.iter().enumerate() {
            if *b == b'?' {
                let digits: String = statement[i + 1..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                max = max.max(digits.parse().unwrap_or(0));
            }
        }
        max
    }

    #[test]
    fn every_hot_query_is_served_by_an_index() {
        let db = SqliteSql::open_in_memory();
        block_on(migrate(&db)).unwrap();
        let all = HOT_QUERIES
            .iter()
            .chain(crate::uploads::HOT_QUERIES)
            .chain(crate::workflows::HOT_QUERIES)
            .chain(crate::meta_events::HOT_QUERIES)
            .chain(crate::notifications::HOT_QUERIES)
            .chain(crate::ops::alerts::HOT_QUERIES)
            .chain(crate::ops::baselines::HOT_QUERIES)
            .chain(crate::api::idempotency::HOT_QUERIES);
        for (name, statement) in all {
            let params = vec![SqlValue::Null; parameter_count(statement)];
            let plan = block_on(db.execute(&format!("EXPLAIN QUERY PLAN {statement}"), &params))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let details: Vec<String> = each(&plan).map(|row| row.text("detail").unwrap()).collect();
            assert!(!details.is_empty(), "{name}: no plan");
            for detail in &details {
                // "SCAN t" reads the whole table; "SCAN t USING INDEX" walks a
                // whole index. Either is a full scan: only SEARCH is allowed.
                assert!(
                    !detail.starts_with("SCAN"),
                    "{name} does a full scan: {details:?}"
                );
            }
        }
    }

    #[test]
    fn the_plan_test_catches_a_full_scan() {
        let db = SqliteSql::open_in_memory();
        block_on(migrate(&db)).unwrap();
        let plan = block_on(db.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM users WHERE password_hash = ?1",
            &[SqlValue::Null],
        ))
        .unwrap();
        let detail = first(&plan).unwrap().text("detail").unwrap();
        assert!(detail.starts_with("SCAN"), "unindexed column: {detail}");
    }

    #[test]
    fn every_statement_touching_tenant_data_names_the_tenant() {
        for (name, statement) in HOT_QUERIES {
            let by_digest = statement.contains("token_hash = ?1")
                || statement.contains("key_hash = ?1")
                || statement.contains("WHERE id = ?1 AND rotated_at");
            assert!(
                statement.contains("tenant_id = ?1") || by_digest || *name == "tenant_operator",
                "{name} is not scoped by tenant: {statement}"
            );
        }
    }
}
