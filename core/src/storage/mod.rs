//! The SQL schema, as numbered migrations in D1's format (`migrations/` at
//! the repository root), and the runner that applies them through the `Sql`
//! port where no `wrangler d1 migrations apply` runs (Spin, tests).
//!
//! Applied migrations are recorded in `d1_migrations`, the table wrangler
//! uses, so both ways of migrating agree. Every statement must be idempotent
//! (`IF NOT EXISTS`): instances may migrate concurrently.

pub mod rows;

use crate::ports::{PortError, Sql, SqlValue};

#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub name: &'static str,
    pub sql: &'static str,
}

/// One `Migration` per file name, its SQL included from `migrations/`.
macro_rules! migrations {
    ($($name:literal),* $(,)?) => {
        &[$(Migration {
            name: $name,
            sql: include_str!(concat!("../../../migrations/", $name)),
        }),*]
    };
}

/// Every migration, in order. A test checks this list against the folder.
pub const MIGRATIONS: &[Migration] = migrations![
    "0001_http_metrics.sql",
    "0002_auth.sql",
    "0003_rate_limits.sql",
    "0004_uploads_jobs.sql",
    "0005_workflows.sql",
    "0006_meta.sql",
    "0007_notifications.sql",
    "0008_meta_seen_age.sql",
    "0009_job_processing.sql",
    "0010_metric_series.sql",
    "0011_webhook_secrets.sql",
    "0012_metric_groups.sql",
    "0013_alerts.sql",
    "0014_baselines.sql",
    "0015_metric_minutes.sql",
];

/// The migrations of the metrics aggregate's tables, which a Workers
/// Durable Object keeps in its own SQLite.
const METRICS_MIGRATIONS: [&str; 3] = [
    "0010_metric_series.sql",
    "0012_metric_groups.sql",
    "0015_metric_minutes.sql",
];

const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS d1_migrations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT UNIQUE,
    applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL)";

/// Creates the metrics aggregate's tables where they live apart from the
/// application database (the Workers Durable Object's own SQLite).
pub async fn migrate_metrics(sql: &dyn Sql) -> Result<(), PortError> {
    for name in METRICS_MIGRATIONS {
        let migration = MIGRATIONS
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| PortError(format!("the metrics migration {name} is missing")))?;
        for statement in statements(migration.sql) {
            sql.execute(statement, &[]).await?;
        }
    }
    Ok(())
}

const APPLIED: &str = "SELECT name FROM d1_migrations";

/// Applies the migrations not yet recorded; returns how many it applied.
pub async fn migrate(sql: &dyn Sql) -> Result<usize, PortError> {
    // The ledger exists on every request but the first (instances that
    // live for one request check it every time): read first, create only
    // when the read fails.
    let applied = if let Ok(rows) = sql.execute(APPLIED, &[]).await {
        rows
    } else {
        sql.execute(CREATE_LEDGER, &[]).await?;
        sql.execute(APPLIED, &[]).await?
    };
    let applied: Vec<&str> = applied
        .rows
        .iter()
        .filter_map(|row| match row.first() {
            Some(SqlValue::Text(name)) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    let mut count = 0;
    for migration in MIGRATIONS.iter().filter(|m| !applied.contains(&m.name)) {
        for statement in statements(migration.sql) {
            sql.execute(statement, &[]).await?;
        }
        sql.execute(
            "INSERT OR IGNORE INTO d1_migrations (name) VALUES (?1)",
            &[SqlValue::Text(migration.name.to_owned())],
        )
        .await?;
        count += 1;
    }
    Ok(count)
}

/// Splits a migration into statements at `;` outside quotes and comments
/// (the SQL ports run one statement per call).
pub fn statements(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => {
                let quote = bytes[i];
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += 1;
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b';' => {
                out.push(&sql[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&sql[start.min(sql.len())..]);
    out.into_iter()
        .map(str::trim)
        .filter(|s| {
            !s.lines()
                .all(|l| l.trim().is_empty() || l.trim().starts_with("--"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{SqliteSql, block_on};

    #[test]
    fn splits_statements_outside_quotes_and_comments() {
        let sql = "-- a comment; not a split\nCREATE TABLE a (x TEXT DEFAULT 'a;b');\nINSERT INTO a VALUES (\"q;\");\n-- trailing comment\n";
        assert_eq!(
            statements(sql),
            [
                "-- a comment; not a split\nCREATE TABLE a (x TEXT DEFAULT 'a;b')",
                "INSERT INTO a VALUES (\"q;\")"
            ]
        );
    }

    #[test]
    fn migrations_list_matches_the_folder() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("sql")))
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        crate::sort::sort(&mut files);
        let listed: Vec<&str> = MIGRATIONS.iter().map(|m| m.name).collect();
        assert_eq!(
            files, listed,
            "every file in migrations/ is in MIGRATIONS, in order"
        );
    }

    #[test]
    fn migrate_applies_each_migration_once_on_real_sqlite() {
        let db = SqliteSql::open_in_memory();
        assert_eq!(block_on(migrate(&db)).unwrap(), MIGRATIONS.len());
        assert_eq!(
            block_on(migrate(&db)).unwrap(),
            0,
            "second run applies nothing"
        );
        let tables = block_on(db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'http_metric_totals'",
            &[],
        ))
        .unwrap();
        assert_eq!(tables.rows.len(), 1);
    }
}
