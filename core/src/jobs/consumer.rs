//! Background jobs: what happens to each message of a queue.
//!
//! The Cloudflare Queues consumer (Workers) and the outbox drain (Spin)
//! both hand a batch of deliveries to [`process_batch`] and get one
//! [`Decision`] per delivery back, which they map to their platform's
//! acknowledge / retry-after-delay / dead-letter. Everything else is here:
//!
//! - idempotency: an applied job's event id is recorded in
//!   `processed_jobs` in the same SQL batch as the job's own writes, and a
//!   delivery whose event id is recorded is acknowledged without effect;
//! - a time budget per attempt, failures classified 4xx (permanent), 5xx and
//!   timeout (transient), and backoff with full jitter (`processing`);
//! - bounded concurrency within a batch, and one metrics write per batch;
//! - the trace: each job continues the envelope's trace with a new span,
//!   logs carry request id, tenant and trace id, and webhooks send
//!   `traceparent`.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::api::context::{RequestId, TenantId, TraceParent};
use crate::config::Config;
use crate::jobs::events::{
    self, Event, NotificationWebhookRequested, UploadReceived, WorkflowRunRequested,
};
use crate::jobs::metrics::{self as worker_metrics, WorkerMetrics};
use crate::jobs::outbox::{Counted, KvBlobs, SqlOutbox};
use crate::jobs::retry::{Decision, Failure, FailureClass, decide};
use crate::ports::{Blobs, Jobs, Ports, Queue, Sql, SqlValue, Statement};
use crate::secret;
use crate::time::Timestamp;

/// One message as the platform delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The CloudEvents envelope, as JSON text.
    pub body: String,
    /// 1 for the first delivery.
    pub attempt: u32,
}

/// The parts of an envelope a job needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub id: String,
    pub event_type: String,
    pub time: Timestamp,
    pub tenant: TenantId,
    pub request_id: RequestId,
    pub trace: Option<TraceParent>,
    pub data: Value,
    /// The whole envelope, for re-publishing and dead letters.
    pub raw: Value,
}

impl Envelope {
    /// Reads an envelope; `Err` names what is wrong with it.
    pub fn parse(body: &str) -> Result<Self, &'static str> {
        let raw: Value = serde_json::from_str(body).map_err(|_| "the message is not JSON")?;
        let text = |name: &str| raw.get(name).and_then(Value::as_str);
        if text("specversion") != Some("1.0") {
            return Err("not a CloudEvents 1.0 envelope");
        }
        let id = text("id").filter(|id| !id.is_empty() && id.len() <= 128);
        let event_type = text("type").filter(|t| !t.is_empty() && t.len() <= 128);
        let (Some(id), Some(event_type)) = (id, event_type) else {
            return Err("the envelope has no id or type");
        };
        let time = text("time")
            .and_then(Timestamp::parse_rfc3339)
            .ok_or("the envelope's time is not an RFC 3339 UTC time")?;
        let tenant = text("tenantid")
            .and_then(TenantId::parse)
            .ok_or("the envelope's tenantid is missing or invalid")?;
        let request_id = text("requestid")
            .and_then(RequestId::parse)
            .ok_or("the envelope's requestid is missing or invalid")?;
        let trace = text("traceparent").and_then(TraceParent::parse);
        let data = raw.get("data").cloned().unwrap_or(Value::Null);
        Ok(Self {
            id: id.to_owned(),
            event_type: event_type.to_owned(),
            time,
            tenant,
            request_id,
            trace,
            data,
            raw,
        })
    }
}

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

const ALREADY_PROCESSED: &str = "SELECT event_id FROM processed_jobs WHERE event_id = ?1";
const MARK_PROCESSED: &str = "INSERT OR IGNORE INTO processed_jobs \
     (event_id, queue, tenant_id, processed_at) VALUES (?1, ?2, ?3, ?4)";
const PARK: &str = "INSERT OR IGNORE INTO dead_letters \
     (id, tenant_id, queue, event_id, event_type, envelope, class, reason, attempts, dead_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

/// The statements jobs run, for the query-plan test.
pub const HOT_QUERIES: &[(&str, &str)] = &[
    ("job_already_processed", ALREADY_PROCESSED),
    ("outbox_lease", LEASE),
    ("dead_letters_page", DEAD_LETTERS_PAGE),
    ("run_for_job", RUN),
    ("upload_for_job", UPLOAD),
];

/// Processes a batch from `queue` and decides each delivery. Never fails:
/// a job that cannot run (no storage, a malformed envelope) is decided
/// like any other failure.
pub async fn process_batch(
    config: &Config,
    ports: &Ports<'_>,
    queue: Queue,
    deliveries: &[Delivery],
) -> Vec<Decision> {
    let n = i64::try_from(deliveries.len()).unwrap_or(i64::MAX);
    let mut started = WorkerMetrics::default();
    started.record_active(queue, n);
    flush_metrics(ports, &started).await;

    let jobs: Vec<_> = deliveries
        .iter()
        .map(|delivery| process_one(config, ports, queue, delivery))
        .collect();
    let results = run_bounded(jobs, config.jobs.concurrency).await;

    let mut finished = WorkerMetrics::default();
    finished.record_active(queue, -n);
    let mut decisions = Vec::with_capacity(results.len());
    for attempt in results {
        finished.record_attempt(
            queue,
            attempt.lag_secs,
            attempt.duration_ms,
            attempt.failure,
            &attempt.decision,
        );
        decisions.push(attempt.decision);
    }
    flush_metrics(ports, &finished).await;
    decisions
}

async fn flush_metrics(ports: &Ports<'_>, delta: &WorkerMetrics) {
    let Some(sql) = ports.sql else { return };
    if let Err(e) = worker_metrics::flush(sql, delta).await {
        tracing::error!(target: "tepi::jobs", error = %e, "could not record worker metrics");
    }
}

/// Parks a message that reached a dead-letter queue (Workers' DLQ
/// consumer). Messages the core dead-lettered carry why; others were moved
/// by the platform after its own retries and are counted here.
pub async fn park(ports: &Ports<'_>, queue: Queue, delivery: &Delivery) -> Decision {
    let Some(sql) = ports.sql else {
        return Decision::Retry {
            delay_secs: 30,
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
                delay_secs: 30,
                class: FailureClass::Server,
            }
        }
    }
}

/// The row that parks a job in `dead_letters`: the DLQ consumer's and the
/// Spin drain's.
fn park_statement(
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

const LEASE: &str = "UPDATE job_outbox SET attempts = attempts + 1, available_at = ?2 \
     WHERE id IN (SELECT id FROM job_outbox WHERE available_at <= ?1 ORDER BY available_at LIMIT ?3) \
     RETURNING id, queue, envelope, attempts";
const OUTBOX_DONE: &str = "DELETE FROM job_outbox WHERE id = ?1";
const OUTBOX_LATER: &str = "UPDATE job_outbox SET available_at = ?2 WHERE id = ?1";
const DEAD_LETTERS_PAGE: &str = "SELECT id, queue, event_id, event_type, envelope, class, reason, \
     attempts, dead_at FROM dead_letters WHERE tenant_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3";

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
pub async fn drain(
    config: &Config,
    ports: &Ports<'_>,
    sql: &dyn Sql,
    limit: u32,
) -> Result<Drained, crate::ports::PortError> {
    let now = ports.clock.now().as_unix_secs();
    // Long enough for the slowest possible drain: every round of
    // JOB_CONCURRENCY jobs may use its whole time budget.
    let rounds =
        u64::from(limit).div_ceil(u64::try_from(config.jobs.concurrency.max(1)).unwrap_or(1));
    let worst = rounds * u64::from(config.jobs.timeout_ms).div_ceil(1000) + 5;
    let lease = u64::from(config.jobs.lease_secs).max(worst);
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
        for row in crate::auth::store::each(&leased) {
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
        let decisions = process_batch(config, ports, queue, &deliveries).await;
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

/// `GET /v1/jobs/dead-letters`: the tenant's parked jobs, by id.
pub async fn dead_letters(
    sql: &dyn Sql,
    tenant: &TenantId,
    req: &http::Request<Bytes>,
) -> Result<Value, crate::api::error::ApiError> {
    use crate::auth::handlers::{list_body, page_of, rfc3339, storage};
    let (cursor, limit) = page_of(req)?;
    let rows = sql
        .execute(
            DEAD_LETTERS_PAGE,
            &[tenant.as_str().into(), cursor.into(), limit.into()],
        )
        .await
        .map_err(|e| storage(&e))?;
    let mut items = Vec::new();
    for row in crate::auth::store::each(&rows) {
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

struct Attempt {
    decision: Decision,
    failure: Option<FailureClass>,
    lag_secs: f64,
    duration_ms: f64,
}

/// Everything one job needs while it runs.
struct Job<'a> {
    config: &'a Config,
    sql: &'a dyn Sql,
    jobs: &'a dyn Jobs,
    blobs: Option<&'a dyn Blobs>,
    ports: &'a Ports<'a>,
    queue: Queue,
    envelope: &'a Envelope,
    /// This job's own span of the envelope's trace.
    trace: TraceParent,
    started: Timestamp,
    /// No retry follows this attempt, whatever happens.
    last_attempt: bool,
}

async fn process_one(
    config: &Config,
    ports: &Ports<'_>,
    queue: Queue,
    delivery: &Delivery,
) -> Attempt {
    let started = ports.clock.now();
    let attempt = delivery.attempt.max(1);
    let envelope = Envelope::parse(&delivery.body);
    let lag_secs = envelope
        .as_ref()
        .map_or(0.0, |e| started.millis_since(e.time) / 1000.0);
    let outcome = match &envelope {
        Err(why) => {
            tracing::error!(target: "tepi::jobs", queue = queue.as_str(), attempt, reason = why,
                "malformed job");
            Err(Failure::Invalid)
        }
        Ok(envelope) => {
            let last = attempt >= config.jobs.retry.max_attempts;
            run_job(config, ports, queue, envelope, started, last).await
        }
    };
    let decision = decide(outcome, attempt, &config.jobs.retry, ports.entropy);
    if let (Ok(envelope), Decision::DeadLetter { reason, .. }, Some(sql)) =
        (&envelope, &decision, ports.sql)
    {
        give_up(sql, envelope, reason, ports.clock.now()).await;
    }
    let duration_ms = ports.clock.now().millis_since(started);
    if let Ok(envelope) = &envelope {
        let trace_id = envelope.trace.map(|t| t.trace_id_hex()).unwrap_or_default();
        let outcome = match &decision {
            Decision::Ack => "ack",
            Decision::Retry { .. } => "retry",
            Decision::DeadLetter { .. } => "dead_letter",
        };
        tracing::info!(target: "tepi::jobs", queue = queue.as_str(), event_id = %envelope.id,
            event_type = %envelope.event_type, tenant = envelope.tenant.as_str(),
            request_id = envelope.request_id.as_str(), trace_id = %trace_id, attempt,
            outcome, error_class = outcome_class(outcome_failure(&decision)),
            duration_ms, lag_ms = lag_secs * 1000.0, "job");
    }
    Attempt {
        failure: outcome_failure(&decision),
        decision,
        lag_secs,
        duration_ms,
    }
}

fn outcome_failure(decision: &Decision) -> Option<FailureClass> {
    match decision {
        Decision::Ack => None,
        Decision::Retry { class, .. } | Decision::DeadLetter { class, .. } => Some(*class),
    }
}

fn outcome_class(class: Option<FailureClass>) -> &'static str {
    class.map_or("", FailureClass::as_str)
}

/// Runs one parsed job within its time budget.
async fn run_job(
    config: &Config,
    ports: &Ports<'_>,
    queue: Queue,
    envelope: &Envelope,
    started: Timestamp,
    last_attempt: bool,
) -> Result<(), Failure> {
    let sql = ports.sql.ok_or(Failure::Unreachable)?;
    let done = sql
        .execute(ALREADY_PROCESSED, &[envelope.id.clone().into()])
        .await
        .map_err(|_| Failure::Unreachable)?;
    if !done.rows.is_empty() {
        tracing::info!(target: "tepi::jobs", event_id = %envelope.id, "already applied: redelivery ignored");
        return Ok(());
    }
    let now = started;
    let outbox = SqlOutbox {
        sql,
        entropy: ports.entropy,
        now,
    };
    let counted = Counted {
        inner: ports.jobs.unwrap_or(&outbox),
        sql,
    };
    let kv_blobs = ports.kv.map(KvBlobs);
    let job = Job {
        config,
        sql,
        jobs: &counted,
        blobs: ports.blobs.or(kv_blobs.as_ref().map(|b| b as &dyn Blobs)),
        ports,
        queue,
        envelope,
        trace: envelope.trace.map_or_else(
            || TraceParent::start(ports.entropy),
            |t| t.child(ports.entropy),
        ),
        started,
        last_attempt,
    };
    let work = async {
        let mut writes = job.apply().await?;
        writes.push(Statement::new(
            MARK_PROCESSED,
            vec![
                envelope.id.clone().into(),
                queue.as_str().into(),
                envelope.tenant.as_str().into(),
                now.as_unix_secs().into(),
            ],
        ));
        sql.batch(&writes).await.map_err(|e| {
            tracing::error!(target: "tepi::jobs", error = %e, "could not record a job's writes");
            Failure::Unreachable
        })
    };
    match ports.timer {
        Some(timer) => {
            let budget = timer.sleep(config.jobs.timeout_ms);
            match race(work, budget).await {
                Some(result) => result,
                None => Err(Failure::Timeout),
            }
        }
        None => work.await,
    }
}

/// A job that will not be retried any more leaves its traces: a workflow
/// run is marked failed.
async fn give_up(sql: &dyn Sql, envelope: &Envelope, reason: &str, now: Timestamp) {
    tracing::warn!(target: "tepi::jobs", event_id = %envelope.id, reason, "job dead-lettered");
    if envelope.event_type != WorkflowRunRequested::TYPE {
        return;
    }
    let run_id = envelope.data["run_id"].as_str().unwrap_or_default();
    let result = sql
        .execute(
            RUN_FAILED,
            &[
                envelope.tenant.as_str().into(),
                run_id.into(),
                now.as_unix_secs().into(),
            ],
        )
        .await;
    if let Err(e) = result {
        tracing::error!(target: "tepi::jobs", error = %e, run_id, "could not mark a run failed");
    }
}

const RUN: &str = "SELECT r.status, r.step_results, r.input, r.cause, w.steps FROM workflow_runs r \
     JOIN workflows w ON w.tenant_id = r.tenant_id AND w.id = r.workflow_id \
     WHERE r.tenant_id = ?1 AND r.id = ?2";
const RUN_PROGRESS: &str = "UPDATE workflow_runs SET status = ?3, step_results = ?4, updated_at = ?5 \
     WHERE tenant_id = ?1 AND id = ?2";
const RUN_FAILED: &str = "UPDATE workflow_runs SET status = 'failed', updated_at = ?3 \
     WHERE tenant_id = ?1 AND id = ?2 AND status IN ('requested', 'running')";
const NOTIFY: &str = "INSERT OR IGNORE INTO notifications \
     (id, tenant_id, user_id, subject, body, sent_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const USERS_WITH_ROLE: &str =
    "SELECT id FROM users WHERE tenant_id = ?1 AND role = ?2 ORDER BY id LIMIT ?3";
const NEW_RUN: &str = "INSERT OR IGNORE INTO workflow_runs \
     (id, tenant_id, workflow_id, status, cause, input, step_results, requested_by, created_at, updated_at) \
     VALUES (?1, ?2, ?3, 'requested', ?4, ?5, ?6, NULL, ?7, ?7)";
const RUN_STATUS: &str = "SELECT status FROM workflow_runs WHERE tenant_id = ?1 AND id = ?2";
const UPLOAD: &str = "SELECT size, sha256 FROM uploads WHERE tenant_id = ?1 AND id = ?2";
const UPLOAD_CHECKED: &str = "INSERT OR REPLACE INTO upload_checks \
     (upload_id, tenant_id, result, checked_at) VALUES (?1, ?2, ?3, ?4)";

/// A stable id derived from `parts`, so a redelivered job writes the same
/// rows (and `INSERT OR IGNORE` keeps one).
fn derived_id(prefix: &str, parts: &[&str]) -> String {
    let digest = secret::digest(&parts.join("\u{1f}"));
    format!("{prefix}{}", &digest[..24.min(digest.len())])
}

impl Job<'_> {
    fn tenant(&self) -> &str {
        self.envelope.tenant.as_str()
    }

    fn secs(&self) -> i64 {
        self.started.as_unix_secs()
    }

    async fn query(
        &self,
        statement: &str,
        params: Vec<SqlValue>,
    ) -> Result<crate::ports::Rows, Failure> {
        self.sql.execute(statement, &params).await.map_err(|e| {
            tracing::error!(target: "tepi::jobs", error = %e, "storage failed during a job");
            Failure::Unreachable
        })
    }

    /// Does the job's work; returns the writes to commit together with the
    /// processed marker.
    async fn apply(&self) -> Result<Vec<Statement>, Failure> {
        let event_type = self.envelope.event_type.as_str();
        let expected_queue = match event_type {
            NotificationWebhookRequested::TYPE => Queue::Notifications,
            WorkflowRunRequested::TYPE => Queue::Workflows,
            UploadReceived::TYPE => Queue::Uploads,
            t if t.starts_with("meta.") => Queue::MetaEvents,
            _ => {
                tracing::error!(target: "tepi::jobs", event_type, "unknown job type");
                return Err(Failure::Invalid);
            }
        };
        if expected_queue != self.queue {
            tracing::error!(target: "tepi::jobs", event_type, queue = self.queue.as_str(),
                "job on the wrong queue");
            return Err(Failure::Invalid);
        }
        match self.queue {
            Queue::Notifications => self.deliver_notification().await,
            Queue::Workflows => self.run_workflow().await,
            Queue::MetaEvents => self.trigger_workflows().await,
            Queue::Uploads => self.check_upload().await,
        }
    }

    /// POSTs a signed JSON body to `url`; `Ok` on 2xx. `delivery` is the
    /// `Tepi-Event-Id` receivers deduplicate on: the same for every retry
    /// of this delivery.
    async fn post_webhook(&self, url: &str, body: &Value, delivery: &str) -> Result<u16, Failure> {
        if !self.config.jobs.webhook_url_allowed(url) {
            tracing::error!(target: "tepi::jobs", url, "webhook URL not allowed");
            return Err(Failure::Invalid);
        }
        let Some(secret) = &self.config.jobs.webhook_secret else {
            tracing::error!(target: "tepi::jobs", "WEBHOOK_SIGNING_SECRET is not set");
            return Err(Failure::Unreachable);
        };
        let client = self.ports.http.ok_or(Failure::Unreachable)?;
        let bytes = body.to_string();
        let signature =
            crate::notifications::signature(secret.as_bytes(), self.secs(), bytes.as_bytes());
        let request = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "tepi-webhooks/1")
            .header(crate::notifications::SIGNATURE_HEADER, signature)
            .header(crate::api::context::TRACEPARENT, self.trace.to_string())
            .header(
                crate::api::context::REQUEST_ID,
                self.envelope.request_id.as_str(),
            )
            .header(crate::api::context::TENANT_ID, self.tenant())
            .header("tepi-event-id", delivery)
            .body(Bytes::from(bytes))
            .map_err(|_| Failure::Invalid)?;
        match client.send(request).await {
            Ok(response) if response.status().is_success() => Ok(response.status().as_u16()),
            Ok(response) => Err(Failure::Status(response.status().as_u16())),
            Err(e) => {
                tracing::warn!(target: "tepi::jobs", error = %e, url, "webhook unreachable");
                Err(Failure::Unreachable)
            }
        }
    }

    async fn deliver_notification(&self) -> Result<Vec<Statement>, Failure> {
        let data = &self.envelope.data;
        let field = |name: &str| data.get(name).and_then(Value::as_str);
        let (Some(id), Some(url), Some(subject), Some(body)) = (
            field("notification_id"),
            field("url"),
            field("subject"),
            field("body"),
        ) else {
            return Err(Failure::Invalid);
        };
        let payload = json!({
            "notification_id": id,
            "tenant_id": self.tenant(),
            "subject": subject,
            "body": body,
            "sent_at": self.envelope.time.to_rfc3339(),
        });
        self.post_webhook(url, &payload, &self.envelope.id).await?;
        Ok(Vec::new())
    }

    async fn check_upload(&self) -> Result<Vec<Statement>, Failure> {
        let Some(upload_id) = self.envelope.data["upload_id"].as_str() else {
            return Err(Failure::Invalid);
        };
        let rows = self
            .query(UPLOAD, vec![self.tenant().into(), upload_id.into()])
            .await?;
        let (Some(size), Some(sha256)) = (
            rows.get(0, "size").and_then(SqlValue::as_integer),
            rows.get(0, "sha256").and_then(SqlValue::as_text),
        ) else {
            // Deleted since: nothing to check.
            return Ok(Vec::new());
        };
        let blobs = self.blobs.ok_or(Failure::Unreachable)?;
        let key = crate::uploads::blob_key(&self.envelope.tenant, upload_id);
        let stored = blobs.get(&key).await.map_err(|_| Failure::Unreachable)?;
        let verdict = stored.is_some_and(|blob| {
            i64::try_from(blob.body.len()).ok() == Some(size)
                && crate::uploads::hex(&Sha256::digest(&blob.body)) == sha256
        });
        let mark = |result: &str| {
            Statement::new(
                UPLOAD_CHECKED,
                vec![
                    upload_id.into(),
                    self.tenant().into(),
                    result.into(),
                    self.secs().into(),
                ],
            )
        };
        if verdict {
            // Workflows triggered by `upload.received` start now.
            self.trigger_workflows().await?;
            Ok(vec![mark("ready")])
        } else {
            // Missing or different bytes: keep the verdict, dead-letter the job.
            self.sql
                .batch(&[mark("invalid")])
                .await
                .map_err(|_| Failure::Unreachable)?;
            tracing::error!(target: "tepi::jobs", upload_id, "stored object does not match its declaration");
            Err(Failure::Status(422))
        }
    }

    async fn trigger_workflows(&self) -> Result<Vec<Statement>, Failure> {
        let rows = self
            .query(
                crate::workflows::EVENT_TRIGGERED,
                vec![self.tenant().into()],
            )
            .await?;
        let cause = json!({
            "type": "event",
            "event_id": self.envelope.id,
            "event_type": self.envelope.event_type,
        });
        for row in crate::auth::store::each(&rows) {
            let (Ok(workflow_id), Ok(pattern)) = (row.text("id"), row.text("trigger")) else {
                continue;
            };
            if !crate::workflows::pattern_matches(&pattern, &self.envelope.event_type) {
                continue;
            }
            let steps = row
                .text("steps")
                .ok()
                .and_then(|s| serde_json::from_str::<Vec<Value>>(&s).ok())
                .map_or(0, |s| s.len());
            let run_id = derived_id("run_", &[&self.envelope.id, &workflow_id]);
            let pending: Vec<Value> = (0..steps)
                .map(|_| json!({"status": "pending", "result": null}))
                .collect();
            self.query(
                NEW_RUN,
                vec![
                    run_id.clone().into(),
                    self.tenant().into(),
                    workflow_id.clone().into(),
                    cause.to_string().into(),
                    self.envelope.data.to_string().into(),
                    Value::Array(pending).to_string().into(),
                    self.secs().into(),
                ],
            )
            .await?;
            // A redelivery publishes again only for runs not yet started.
            let status = self
                .query(
                    RUN_STATUS,
                    vec![self.tenant().into(), run_id.clone().into()],
                )
                .await?;
            if status.get(0, "status").and_then(SqlValue::as_text) != Some("requested") {
                continue;
            }
            let event = WorkflowRunRequested {
                workflow_id,
                run_id,
                cause: cause.clone(),
                input: self.envelope.data.clone(),
            };
            self.publish(&event, 0).await?;
        }
        Ok(Vec::new())
    }

    /// Publishes an event continuing this job's trace.
    async fn publish<E: Event>(&self, event: &E, delay_secs: u32) -> Result<(), Failure> {
        let envelope = events::envelope_in_trace(
            event,
            &self.envelope.tenant,
            self.envelope.request_id.as_str(),
            &self.trace,
            self.ports.entropy,
            self.ports.clock.now(),
        );
        self.jobs
            .enqueue_after(E::QUEUE, &envelope.to_string(), delay_secs)
            .await
            .map_err(|e| {
                tracing::error!(target: "tepi::jobs", error = %e, "could not publish");
                Failure::Unreachable
            })
    }

    #[allow(clippy::too_many_lines)] // one loop over the three step kinds
    async fn run_workflow(&self) -> Result<Vec<Statement>, Failure> {
        let data = &self.envelope.data;
        let (Some(run_id), Some(workflow_id)) =
            (data["run_id"].as_str(), data["workflow_id"].as_str())
        else {
            return Err(Failure::Invalid);
        };
        let rows = self
            .query(RUN, vec![self.tenant().into(), run_id.into()])
            .await?;
        let text = |column: &str| rows.get(0, column).and_then(SqlValue::as_text);
        let Some(status) = text("status") else {
            // The run or its workflow was deleted: nothing to do.
            return Ok(Vec::new());
        };
        if matches!(status, "succeeded" | "failed") {
            return Ok(Vec::new());
        }
        let steps: Vec<Value> = text("steps")
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        let mut results: Vec<Value> = text("step_results")
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        results.resize(steps.len(), json!({"status": "pending", "result": null}));
        let input: Value = text("input")
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Value::Null);
        let progress = |status: &str, results: &[Value]| {
            Statement::new(
                RUN_PROGRESS,
                vec![
                    self.tenant().into(),
                    run_id.into(),
                    status.into(),
                    Value::Array(results.to_vec()).to_string().into(),
                    self.ports.clock.now().as_unix_secs().into(),
                ],
            )
        };
        for (i, step) in steps.iter().enumerate() {
            if results[i]["status"] == "succeeded" {
                continue;
            }
            let mut writes = Vec::new();
            let outcome = match step["type"].as_str() {
                Some("notify") => {
                    self.notify_step(run_id, workflow_id, i, step, &mut writes)
                        .await
                }
                Some("webhook") => {
                    let body = json!({
                        "run_id": run_id,
                        "workflow_id": workflow_id,
                        "step": i,
                        "input": input,
                    });
                    let url = step["url"].as_str().unwrap_or_default();
                    self.post_webhook(url, &body, &format!("{run_id}.{i}"))
                        .await
                        .map(|status| json!({"status": status}))
                }
                Some("wait") => {
                    let seconds = step["seconds"].as_u64().unwrap_or(0);
                    let now = self.ports.clock.now().as_unix_secs();
                    let until = results[i]["result"]["until"]
                        .as_i64()
                        .unwrap_or_else(|| now + i64::try_from(seconds).unwrap_or(0));
                    if now < until {
                        // Continue later: a delayed job takes over the run.
                        results[i] = json!({"status": "waiting", "result": {"until": until}});
                        let event = WorkflowRunRequested {
                            workflow_id: workflow_id.to_owned(),
                            run_id: run_id.to_owned(),
                            cause: data["cause"].clone(),
                            input: data["input"].clone(),
                        };
                        // Queues delay at most 12 hours; a longer wait
                        // re-defers when the continuation arrives early.
                        let delay = u32::try_from(until - now).unwrap_or(u32::MAX).min(43_200);
                        self.publish(&event, delay).await?;
                        return Ok(vec![progress("running", &results)]);
                    }
                    Ok(json!({"until": until}))
                }
                _ => Err(Failure::Invalid),
            };
            match outcome {
                Ok(result) => {
                    results[i] = json!({"status": "succeeded", "result": result});
                    writes.push(progress("running", &results));
                    self.sql
                        .batch(&writes)
                        .await
                        .map_err(|_| Failure::Unreachable)?;
                }
                Err(failure) => {
                    let status = if failure.class().is_transient() && !self.last_attempt {
                        "retrying"
                    } else {
                        "failed"
                    };
                    results[i] =
                        json!({"status": status, "result": {"error": failure_text(failure)}});
                    let run_status = if status == "failed" {
                        "failed"
                    } else {
                        "running"
                    };
                    if let Err(e) = self.sql.batch(&[progress(run_status, &results)]).await {
                        tracing::error!(target: "tepi::jobs", error = %e, "could not record a step failure");
                    }
                    return Err(failure);
                }
            }
        }
        Ok(vec![progress("succeeded", &results)])
    }

    /// Inbox entries for a notify step (ids derived from run and step, so
    /// a retried step writes each once).
    async fn notify_step(
        &self,
        run_id: &str,
        workflow_id: &str,
        index: usize,
        step: &Value,
        writes: &mut Vec<Statement>,
    ) -> Result<Value, Failure> {
        let message = step["message"].as_str().unwrap_or_default();
        let recipients: Vec<String> = if let Some(user) = step["user_id"].as_str() {
            vec![user.to_owned()]
        } else {
            let role = step["role"].as_str().unwrap_or_default();
            let limit = i64::try_from(crate::notifications::MAX_ROLE_RECIPIENTS).unwrap_or(500);
            let rows = self
                .query(
                    USERS_WITH_ROLE,
                    vec![self.tenant().into(), role.into(), limit.into()],
                )
                .await?;
            crate::auth::store::each(&rows)
                .filter_map(|r| r.text("id").ok())
                .collect()
        };
        let step_key = index.to_string();
        for user in &recipients {
            writes.push(Statement::new(
                NOTIFY,
                vec![
                    derived_id("ntf_", &[run_id, &step_key, user]).into(),
                    self.tenant().into(),
                    user.clone().into(),
                    format!("Workflow {workflow_id}").into(),
                    message.into(),
                    SqlValue::Null,
                    self.secs().into(),
                ],
            ));
        }
        Ok(json!({"recipients": recipients.len()}))
    }
}

fn failure_text(failure: Failure) -> String {
    match failure {
        Failure::Status(status) => format!("answered {status}"),
        Failure::Timeout => "timed out".to_owned(),
        Failure::Unreachable => "unreachable".to_owned(),
        Failure::Invalid => "invalid step".to_owned(),
    }
}

/// Polls `work` and `deadline` together: `Some` with the work's output if
/// it finishes first, `None` when the deadline does.
async fn race<W: Future, D: Future>(work: W, deadline: D) -> Option<W::Output> {
    let mut work = std::pin::pin!(work);
    let mut deadline = std::pin::pin!(deadline);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// Runs the futures with at most `limit` in flight; outputs in input order.
async fn run_bounded<F: Future>(futures: Vec<F>, limit: usize) -> Vec<F::Output> {
    let limit = limit.max(1);
    let total = futures.len();
    let mut pending = futures.into_iter().enumerate();
    let mut running: Vec<(usize, Pin<Box<F>>)> = Vec::with_capacity(limit.min(total));
    let mut outputs: Vec<Option<F::Output>> = (0..total).map(|_| None).collect();
    let mut done = 0;
    std::future::poll_fn(|cx| {
        loop {
            while running.len() < limit {
                let Some((index, future)) = pending.next() else {
                    break;
                };
                running.push((index, Box::pin(future)));
            }
            let mut progressed = false;
            let mut i = 0;
            while i < running.len() {
                if let Poll::Ready(output) = running[i].1.as_mut().poll(cx) {
                    let (index, _) = running.swap_remove(i);
                    outputs[index] = Some(output);
                    done += 1;
                    progressed = true;
                } else {
                    i += 1;
                }
            }
            if done == total {
                return Poll::Ready(());
            }
            if !progressed {
                return Poll::Pending;
            }
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests;
