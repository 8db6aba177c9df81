//! GCRA state in SQL for instances that keep nothing between requests.
//! Each decision reads the key's TAT and writes the new one only if nobody
//! changed it meanwhile (compare-and-swap), retrying a few times.

use super::gcra::{Decision, Policy, decide};
use crate::ports::{Entropy, PortError, Sql, SqlValue};

const READ: &str = "SELECT tat FROM rate_limit_state WHERE key = ?1";
const INSERT: &str = "INSERT INTO rate_limit_state (key, tat) VALUES (?1, ?2) \
     ON CONFLICT (key) DO NOTHING RETURNING key";
const SWAP: &str = "UPDATE rate_limit_state SET tat = ?3 WHERE key = ?1 AND tat = ?2 RETURNING key";
const SWEEP: &str = "DELETE FROM rate_limit_state WHERE tat < ?1";

/// Attempts before a contended key is refused.
const ATTEMPTS: usize = 4;

/// GCRA over the `Sql` port.
#[derive(Debug, Clone, Copy)]
pub struct SqlStore;

fn micros(value: u64) -> SqlValue {
    SqlValue::Integer(i64::try_from(value).unwrap_or(i64::MAX))
}

impl SqlStore {
    /// Decides one request of `key`. Under heavy contention for one key the
    /// request is refused (with a one-interval retry) rather than admitted
    /// unchecked.
    pub async fn decide(
        sql: &dyn Sql,
        entropy: &dyn Entropy,
        key: &str,
        now: u64,
        policy: &Policy,
    ) -> Result<Decision, PortError> {
        for _ in 0..ATTEMPTS {
            let rows = sql.execute(READ, &[key.into()]).await?;
            let stored = rows
                .rows
                .first()
                .and_then(|r| r.first())
                .and_then(SqlValue::as_integer)
                .and_then(|t| u64::try_from(t).ok());
            let decision = decide(stored, now, policy);
            if !decision.allowed {
                return Ok(decision);
            }
            let written = match stored {
                None => {
                    sql.execute(INSERT, &[key.into(), micros(decision.tat)])
                        .await?
                }
                Some(old) => {
                    sql.execute(SWAP, &[key.into(), micros(old), micros(decision.tat)])
                        .await?
                }
            };
            if !written.rows.is_empty() {
                sweep_sometimes(sql, entropy, now).await;
                return Ok(decision);
            }
        }
        Ok(Decision {
            allowed: false,
            tat: now,
            remaining: 0,
            retry_after_micros: policy.interval_micros(),
            reset_micros: policy.interval_micros(),
        })
    }
}

/// About one write in 256 also deletes passed TATs (same as absent rows).
async fn sweep_sometimes(sql: &dyn Sql, entropy: &dyn Entropy, now: u64) {
    let mut byte = [0u8];
    entropy.fill(&mut byte);
    if byte[0] == 0
        && let Err(e) = sql.execute(SWEEP, &[micros(now)]).await
    {
        tracing::warn!(target: "tepi::ratelimit", error = %e, "sweeping rate-limit state failed");
    }
}

#[cfg(test)]
pub(super) const STATEMENTS: [(&str, &str); 4] = [
    ("read", READ),
    ("insert", INSERT),
    ("swap", SWAP),
    ("sweep", SWEEP),
];
