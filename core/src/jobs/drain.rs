//! Spin's stand-in for a queue consumer: the SQL outbox, drained on
//! demand (`POST /v1/jobs/drain`) through the same consumer as Queues.

use crate::jobs::consumer::{Delivery, Runner, process_batch};
use crate::jobs::dead_letters::park_statement;
use crate::jobs::retry::Decision;
use crate::ports::{PortError, Queue, Sql, Statement};
use crate::storage::rows::each;

pub(crate) const LEASE: &str = "UPDATE job_outbox SET attempts = attempts + 1, available_at = ?2 \
     WHERE id IN (SELECT id FROM job_outbox WHERE available_at <= ?1 ORDER BY available_at LIMIT ?3) \
     RETURNING id, queue, envelope, attempts";
const OUTBOX_DONE: &str = "DELETE FROM job_outbox WHERE id = ?1";
const OUTBOX_LATER: &str = "UPDATE job_outbox SET available_at = ?2 WHERE id = ?1";

/// What one drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Drained {
    pub leased: usize,
    pub acked: usize,
    pub retried: usize,
    pub dead_lettered: usize,
}

/// Spin's stand-in for a queue consumer: leases up to `limit` due jobs of
/// the SQL outbox (they become due again after the lease, should this drain
/// die), processes them per queue exactly like the Workers consumer, and
/// settles them in one batch: done → deleted, retry → due after the delay,
/// dead letter → parked and deleted.
pub async fn drain(runner: Runner<'_>, sql: &dyn Sql, limit: u32) -> Result<Drained, PortError> {
    let (config, ports) = (runner.config, runner.ports);
    let now = ports.clock.now().as_unix_secs();
    // Long enough for the slowest possible drain: every round of
    // JOB_CONCURRENCY jobs may use its whole time budget.
    let rounds = u64::from(limit).div_ceil(u64::try_from(config.concurrency.max(1)).unwrap_or(1));
    let worst = rounds * u64::from(config.timeout_ms).div_ceil(1000) + 5;
    let lease = u64::from(config.lease_secs).max(worst);
    let leased = sql
        .execute(
            LEASE,
            &[
                now.into(),
                (now + i64::try_from(lease).unwrap_or(i64::MAX)).into(),
                i64::from(limit).into(),
            ],
        )
        .await?;
    let mut report = Drained {
        leased: leased.rows.len(),
        ..Drained::default()
    };
    let mut settle = Vec::new();
    for queue in Queue::ALL {
        let mut ids = Vec::new();
        let mut deliveries = Vec::new();
        for row in each(&leased) {
            if row.text("queue").ok().as_deref() != Some(queue.as_str()) {
                continue;
            }
            let (Ok(id), Ok(body), Ok(attempts)) = (
                row.text("id"),
                row.text("envelope"),
                row.integer("attempts"),
            ) else {
                continue;
            };
            ids.push(id);
            deliveries.push(Delivery {
                body,
                attempt: u32::try_from(attempts).unwrap_or(u32::MAX),
            });
        }
        if deliveries.is_empty() {
            continue;
        }
        let decisions = process_batch(runner, queue, &deliveries).await;
        for ((id, delivery), decision) in ids.into_iter().zip(&deliveries).zip(decisions) {
            match decision {
                Decision::Ack => {
                    report.acked += 1;
                    settle.push(Statement::new(OUTBOX_DONE, vec![id.into()]));
                }
                Decision::Retry { delay_secs, .. } => {
                    report.retried += 1;
                    let due = ports.clock.now().as_unix_secs() + i64::from(delay_secs);
                    settle.push(Statement::new(OUTBOX_LATER, vec![id.into(), due.into()]));
                }
                Decision::DeadLetter { class, reason } => {
                    report.dead_lettered += 1;
                    settle.push(park_statement(
                        ports,
                        queue,
                        &delivery.body,
                        class.as_str(),
                        reason,
                        i64::from(delivery.attempt),
                    ));
                    settle.push(Statement::new(OUTBOX_DONE, vec![id.into()]));
                }
            }
        }
    }
    if !settle.is_empty() {
        sql.batch(&settle).await?;
    }
    Ok(report)
}
