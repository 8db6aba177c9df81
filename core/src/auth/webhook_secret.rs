//! Each tenant's webhook signing secret
//! (`docs/adr/0010-per-tenant-webhook-secrets.md`). The secret is derived,
//! never stored:
//!
//! ```text
//! whsec_ + hex(HMAC-SHA256(WEBHOOK_SIGNING_SECRET,
//!                          "tepi-webhook-secret-v1\n" + tenant + "\n" + salt))
//! ```
//!
//! The salt is 16 random bytes per tenant (32 hex digits) in
//! `webhook_secrets` (`migrations/0011_webhook_secrets.sql`), so a copy of
//! the database alone reveals no tenant's secret, and neither does the
//! platform key alone. A rotation keeps the previous salt until
//! `previous_until`: during that overlap both secrets sign deliveries.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ports::{Entropy, PortError};
use crate::secret::{self, Secret};
use crate::storage::rows::Row;

/// What every tenant webhook secret starts with, so a leaked one is
/// recognisable.
pub const PREFIX: &str = "whsec_";
/// Names the derivation, so a new scheme (`-v2`) can never collide with
/// this one.
const CONTEXT: &str = "tepi-webhook-secret-v1";
/// How long the previous secret still signs after a rotation, unless the
/// admin says otherwise.
pub const DEFAULT_OVERLAP_SECS: i64 = 86_400;
/// The longest overlap an admin may ask for (seven days).
pub const MAX_OVERLAP_SECS: i64 = 604_800;

/// A new salt: 16 random bytes, lowercase hex.
pub fn new_salt(entropy: &dyn Entropy) -> String {
    secret::random_hex(entropy, 16)
}

/// The secret of `tenant` with `salt`, under the platform's derivation key.
pub fn derive(key: &Secret, tenant: &str, salt: &str) -> Secret {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(CONTEXT.as_bytes());
    mac.update(b"\n");
    mac.update(tenant.as_bytes());
    mac.update(b"\n");
    mac.update(salt.as_bytes());
    Secret::new(format!(
        "{PREFIX}{}",
        secret::hex(&mac.finalize().into_bytes())
    ))
}

/// What identifies a secret without revealing it: the first 16 hex digits
/// of its SHA-256.
pub fn fingerprint(secret: &Secret) -> String {
    let mut digest = secret::digest(secret.expose());
    digest.truncate(16);
    digest
}

/// A tenant's row of `webhook_secrets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salts {
    pub salt: String,
    /// When the current salt was made (Unix seconds).
    pub created_at: i64,
    pub previous: Option<Previous>,
}

/// The salt a rotation replaced, and until when it still signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    pub salt: String,
    /// Unix seconds; from then on it no longer signs.
    pub until: i64,
}

impl Salts {
    /// Reads a row of `salt, created_at, previous_salt, previous_until`.
    pub fn read(row: &Row<'_>) -> Result<Self, PortError> {
        let previous = match (
            row.optional_text("previous_salt")?,
            row.optional_integer("previous_until")?,
        ) {
            (Some(salt), Some(until)) => Some(Previous { salt, until }),
            _ => None,
        };
        Ok(Self {
            salt: row.text("salt")?,
            created_at: row.integer("created_at")?,
            previous,
        })
    }

    /// The previous salt while it still signs at `now`.
    pub fn previous_at(&self, now: i64) -> Option<&Previous> {
        self.previous.as_ref().filter(|p| p.until > now)
    }

    /// The secrets that sign at `now`: the current one first, then the
    /// previous one during its overlap.
    pub fn secrets(&self, key: &Secret, tenant: &str, now: i64) -> Vec<Secret> {
        let mut secrets = vec![derive(key, tenant, &self.salt)];
        if let Some(previous) = self.previous_at(now) {
            secrets.push(derive(key, tenant, &previous.salt));
        }
        secrets
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Sql;
    use crate::storage::{MIGRATIONS, statements};
    use crate::testing::{SeededEntropy, SqliteSql, block_on};

    const KEY: &str = "platform-derivation-key-for-tests-0123"; // pragma: allowlist secret
    const SALT: &str = "00112233445566778899aabbccddeeff"; // pragma: allowlist secret
    const OTHER_SALT: &str = "ffeeddccbbaa99887766554433221100"; // pragma: allowlist secret

    fn key() -> Secret {
        Secret::new(KEY.to_owned())
    }

    #[test]
    fn the_derivation_is_the_documented_one() {
        // Computed independently (Python's hmac, as docs/api.md shows).
        let secret = derive(&key(), "acme", SALT);
        assert_eq!(
            secret.expose(),
            "whsec_67d852b9c86c9f690cc2857dd42d1b328eddafbc49cd8e9620153b3811de10d4" // pragma: allowlist secret
        );
        assert_eq!(fingerprint(&secret), "773c9f69dd3b9027"); // pragma: allowlist secret
    }

    #[test]
    fn each_input_of_the_derivation_changes_the_secret() {
        let base = derive(&key(), "acme", SALT);
        let cases = [
            (derive(&key(), "globex", SALT), "another tenant"),
            (derive(&key(), "acme", OTHER_SALT), "another salt"),
            (
                derive(
                    &Secret::new("another-platform-key-for-tests-0123".into()),
                    "acme",
                    SALT,
                ),
                "another platform key",
            ),
        ];
        for (other, why) in cases {
            assert_ne!(other, base, "{why}");
            assert_ne!(fingerprint(&other), fingerprint(&base), "{why}");
        }
    }

    #[test]
    fn salts_are_32_hex_digits_and_distinct() {
        let entropy = SeededEntropy::new(5);
        let a = new_salt(&entropy);
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(a, new_salt(&entropy));
    }

    #[test]
    fn the_previous_secret_signs_only_until_its_end() {
        let salts = Salts {
            salt: SALT.to_owned(),
            created_at: 1_000,
            previous: Some(Previous {
                salt: OTHER_SALT.to_owned(),
                until: 2_000,
            }),
        };
        let current = derive(&key(), "acme", SALT);
        let previous = derive(&key(), "acme", OTHER_SALT);
        let cases = [
            (
                1_000,
                vec![current.clone(), previous.clone()],
                "at rotation",
            ),
            (
                1_999,
                vec![current.clone(), previous],
                "last second of the overlap",
            ),
            (2_000, vec![current.clone()], "the overlap has ended"),
            (9_999, vec![current.clone()], "long after"),
        ];
        for (now, want, why) in cases {
            assert_eq!(salts.secrets(&key(), "acme", now), want, "{why}");
        }
        let never_rotated = Salts {
            previous: None,
            ..salts
        };
        assert_eq!(never_rotated.secrets(&key(), "acme", 0), vec![current]);
    }

    /// Runs one migration's statements, as `storage::migrate` does.
    fn apply(db: &SqliteSql, name: &str) {
        let migration = MIGRATIONS.iter().find(|m| m.name == name).unwrap();
        for statement in statements(migration.sql) {
            block_on(db.execute(statement, &[])).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn the_migration_salts_existing_tenants_once_however_often_it_runs() {
        let db = SqliteSql::open_in_memory();
        // A database of the build before: every migration up to 0010.
        for m in MIGRATIONS
            .iter()
            .take_while(|m| m.name != "0011_webhook_secrets.sql")
        {
            apply(&db, m.name);
        }
        for (tenant, created) in [("acme", 100), ("globex", 200)] {
            block_on(db.execute(
                "INSERT INTO tenants (id, name, created_at) VALUES (?1, ?1, ?2)",
                &[tenant.into(), created.into()],
            ))
            .unwrap();
        }
        let read = || {
            let rows = block_on(db.execute(
                "SELECT tenant_id, salt, created_at, previous_salt, previous_until \
                 FROM webhook_secrets ORDER BY tenant_id",
                &[],
            ))
            .unwrap();
            crate::storage::rows::each(&rows)
                .map(|row| {
                    let salts = Salts::read(&row).unwrap();
                    (row.text("tenant_id").unwrap(), salts)
                })
                .collect::<Vec<_>>()
        };
        apply(&db, "0011_webhook_secrets.sql");
        let first = read();
        let tenants: Vec<(&str, i64)> = first
            .iter()
            .map(|(t, s)| (t.as_str(), s.created_at))
            .collect();
        assert_eq!(tenants, [("acme", 100), ("globex", 200)]);
        for (tenant, salts) in &first {
            assert_eq!(salts.salt.len(), 32, "{tenant}");
            assert!(
                salts
                    .salt
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{tenant}: lowercase hex, as new_salt makes"
            );
            assert_eq!(salts.previous, None, "{tenant}");
        }
        assert_ne!(first[0].1.salt, first[1].1.salt);
        // Another instance migrating at the same time changes nothing.
        apply(&db, "0011_webhook_secrets.sql");
        assert_eq!(read(), first);
    }
}
