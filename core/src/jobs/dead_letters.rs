//! Dead letters: the body a job is dead-lettered with, parking what
//! reaches a dead-letter queue (or dies in the outbox) in `dead_letters`,
//! and the tenant's listing.

use bytes::Bytes;
use serde_json::{Value, json};

use crate::api::context::TenantId;
use crate::api::response::{list_body, page_of, rfc3339, storage};
use crate::jobs::JobsConfig;
use crate::jobs::consumer::{Delivery, flush_metrics};
use crate::jobs::metrics::WorkerMetrics;
use crate::jobs::retry::{Decision, FailureClass};
use crate::ports::{Ports, Queue, Sql, Statement};
use crate::secret;
use crate::storage::rows::each;

/// The extension attributes a dead-lettered envelope carries: why and
/// after how many attempts.
pub const DEAD_CLASS: &str = "tepideadclass";
pub const DEAD_REASON: &str = "tepideadreason";
pub const DEAD_ATTEMPTS: &str = "tepiattempts";

/// The body to put on a dead-letter queue: the envelope with why it died.
/// An unreadable message is wrapped so that nothing is lost.
pub fn dead_letter_body(body: &str, class: FailureClass, reason: &str, attempts: u32) -> String {
    let mut value = match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(object)) => Value::Object(object),
        _ => json!({"unreadable": body}),
    };
    value[DEAD_CLASS] = json!(class.as_str());
    value[DEAD_REASON] = json!(reason);
    value[DEAD_ATTEMPTS] = json!(attempts);
    value.to_string()
}

const PARK: &str = "INSERT OR IGNORE INTO dead_letters \
     (id, tenant_id, queue, event_id, event_type, envelope, class, reason, attempts, dead_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

pub(crate) const PAGE: &str = "SELECT id, queue, event_id, event_type, envelope, class, reason, \
     attempts, dead_at FROM dead_letters WHERE tenant_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3";

/// Parks a message that reached a dead-letter queue (Workers' DLQ
/// consumer). Messages the core dead-lettered carry why; others were moved
/// by the platform after its own retries and are counted here.
pub async fn park(
    ports: &Ports<'_>,
    config: &JobsConfig,
    queue: Queue,
    delivery: &Delivery,
) -> Decision {
    let Some(sql) = ports.sql else {
        return Decision::Retry {
            delay_secs: config.settle_retry_secs,
            class: FailureClass::Server,
        };
    };
    let value: Value = serde_json::from_str(&delivery.body).unwrap_or(Value::Null);
    let decided = value.get(DEAD_CLASS).and_then(Value::as_str);
    let reason = value
        .get(DEAD_REASON)
        .and_then(Value::as_str)
        .unwrap_or("the platform gave up after its retries");
    let attempts = value
        .get(DEAD_ATTEMPTS)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let park = park_statement(
        ports,
        queue,
        &delivery.body,
        decided.unwrap_or("unknown"),
        reason,
        attempts,
    );
    let event_id = park.params[3].as_text().unwrap_or_default().to_owned();
    match sql.execute(park.sql, &park.params).await {
        Ok(_) => {
            if decided.is_none() {
                let mut delta = WorkerMetrics::default();
                delta.record_platform_dead_letter(queue);
                flush_metrics(ports, &delta).await;
            }
            tracing::warn!(target: "tepi::jobs", queue = queue.as_str(), event_id = %event_id,
                "job parked in dead letters");
            Decision::Ack
        }
        Err(e) => {
            tracing::error!(target: "tepi::jobs", error = %e, "could not park a dead letter");
            Decision::Retry {
                delay_secs: config.settle_retry_secs,
                class: FailureClass::Server,
            }
        }
    }
}

/// The row that parks a job in `dead_letters`: the DLQ consumer's and the
/// Spin drain's.
pub(crate) fn park_statement(
    ports: &Ports<'_>,
    queue: Queue,
    body: &str,
    class: &str,
    reason: &str,
    attempts: i64,
) -> Statement {
    let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let text = |name: &str| value.get(name).and_then(Value::as_str).unwrap_or("");
    let event_id = if text("id").is_empty() {
        secret::id(ports.entropy, "unreadable_")
    } else {
        text("id").to_owned()
    };
    Statement::new(
        PARK,
        vec![
            secret::id(ports.entropy, "dlq_").into(),
            text("tenantid").into(),
            queue.as_str().into(),
            event_id.into(),
            text("type").into(),
            body.into(),
            class.into(),
            reason.into(),
            attempts.into(),
            ports.clock.now().as_unix_secs().into(),
        ],
    )
}

/// `GET /v1/jobs/dead-letters`: the tenant's parked jobs, by id.
pub async fn list(
    sql: &dyn Sql,
    tenant: &TenantId,
    req: &http::Request<Bytes>,
) -> Result<Value, crate::api::error::ApiError> {
    let (cursor, limit) = page_of(req)?;
    let rows = sql
        .execute(PAGE, &[tenant.as_str().into(), cursor.into(), limit.into()])
        .await
        .map_err(|e| storage(&e))?;
    let mut items = Vec::new();
    for row in each(&rows) {
        let read = || -> Result<Value, crate::ports::PortError> {
            let envelope: Value =
                serde_json::from_str(&row.text("envelope")?).unwrap_or(Value::Null);
            Ok(json!({
                "id": row.text("id")?,
                "queue": row.text("queue")?,
                "event_id": row.text("event_id")?,
                "event_type": row.text("event_type")?,
                "class": row.text("class")?,
                "reason": row.text("reason")?,
                "attempts": row.integer("attempts")?,
                "dead_at": rfc3339(row.integer("dead_at")?),
                "envelope": envelope,
            }))
        };
        items.push(read().map_err(|e| storage(&e))?);
    }
    Ok(list_body(&items, limit))
}
