//! Background jobs: what happens to each message of a queue.
//!
//! The Cloudflare Queues adapter (`queue-consumer`) and the outbox drain
//! (Spin) both hand a batch of deliveries to [`process_batch`] and get one
//! [`Decision`] per delivery back, which they map to their platform's
//! acknowledge / retry-after-delay / dead-letter. What a job does is the
//! owning module's (`uploads/job.rs`, …), found by event type in the job
//! table ([`JobRoute`]s, `app/jobs.rs`). Everything around it is here:
//!
//! - idempotency: an applied job's event id is recorded in
//!   `processed_jobs` in the same SQL batch as the job's own writes, and a
//!   delivery whose event id is recorded is acknowledged without effect
//!   (one lookup for the whole batch);
//! - one commit per batch: the writes of every job that published nothing
//!   are committed together once all have run (a job that published commits
//!   its own at once, so what it published never waits on the batch); if
//!   that commit fails, each job's writes are tried alone, so one job's bad
//!   write fails that job only;
//! - a time budget per attempt, failures classified 4xx (permanent), 5xx and
//!   timeout (transient), and backoff with full jitter (`retry`);
//! - bounded concurrency within a batch, and one metrics write per batch;
//! - what a batch's jobs share, read once per batch: a tenant's webhook
//!   salts (`webhook::SaltCache`);
//! - the trace: each job continues the envelope's trace with a new span,
//!   logs carry request id, tenant and trace id, and webhooks send
//!   `traceparent`.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use serde_json::Value;

use crate::api::context::{RequestId, TenantId, TraceParent};
use crate::jobs::JobsConfig;
use crate::jobs::events::{self, Event};
use crate::jobs::metrics::{self as worker_metrics, WorkerMetrics};
use crate::jobs::outbox::Fallbacks;
use crate::jobs::retry::{Decision, Failure, FailureClass, decide};
use crate::jobs::webhook::SaltCache;
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
            .ok_or("the envelope's time is not an RFC 3339 time")?;
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

/// Which of a batch's event ids are applied: this, then `?1, ?2, …`, `)`.
const ALREADY_PROCESSED_IN: &str = "SELECT event_id FROM processed_jobs WHERE event_id IN (";
/// The lookup for three ids, as the query-plan test runs it.
const ALREADY_PROCESSED: &str =
    "SELECT event_id FROM processed_jobs WHERE event_id IN (?1, ?2, ?3)";
/// At most this many event ids per lookup (D1 binds at most 100 parameters).
const LOOKUP_CHUNK: usize = 100;
const MARK_PROCESSED: &str = "INSERT OR IGNORE INTO processed_jobs \
     (event_id, queue, tenant_id, processed_at) VALUES (?1, ?2, ?3, ?4)";
/// The statements jobs run, for the query-plan test.
pub const HOT_QUERIES: &[(&str, &str)] = &[
    ("job_already_processed", ALREADY_PROCESSED),
    ("outbox_lease", crate::jobs::drain::LEASE),
    ("dead_letters_page", crate::jobs::dead_letters::PAGE),
];

/// What a step of a job did: the writes to commit together with the
/// processed marker, and whether the job's next step runs.
#[derive(Debug)]
pub enum Step {
    /// Go on with the next step (if any).
    Next(Vec<Statement>),
    /// The job is done: its later steps do not run (say, the upload it
    /// was about has been deleted since).
    Done(Vec<Statement>),
}

/// What a job's step answers, or why it failed.
pub type JobReply<'a> = Pin<Box<dyn Future<Output = Result<Step, Failure>> + 'a>>;

/// One step of a job, owned by the module whose tables it writes.
pub type JobStep = for<'a> fn(&'a Job<'a>) -> JobReply<'a>;

/// What a job leaves behind when it will not be retried any more.
pub type GiveUp =
    for<'a> fn(&'a dyn Sql, &'a Envelope, Timestamp) -> Pin<Box<dyn Future<Output = ()> + 'a>>;

/// One row of the job table: which queue an event type travels on, and
/// what runs when it arrives.
#[derive(Clone)]
pub struct JobRoute {
    /// An event type, or a family of them when it ends in `.` (`meta.`).
    pub event: &'static str,
    pub queue: Queue,
    /// Run in order, stopping at the first failure; their writes commit
    /// together.
    pub steps: Vec<JobStep>,
    pub give_up: Option<GiveUp>,
}

impl std::fmt::Debug for JobRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}", self.event, self.queue.as_str())
    }
}

impl JobRoute {
    pub fn handles(&self, event_type: &str) -> bool {
        if self.event.ends_with('.') {
            event_type.starts_with(self.event)
        } else {
            event_type == self.event
        }
    }
}

/// What a batch runs with.
#[derive(Clone, Copy)]
pub struct Runner<'a> {
    pub config: &'a JobsConfig,
    pub table: &'a [JobRoute],
    pub ports: &'a Ports<'a>,
    /// Keep blobs in key-value when the platform has no object store.
    pub blobs_in_kv: bool,
}

impl std::fmt::Debug for Runner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// Processes a batch from `queue` and decides each delivery. Never fails:
/// a job that cannot run (no storage, a malformed envelope) is decided
/// like any other failure. Boxed: the queue consumer and the outbox drain
/// share one copy of its state machine.
pub fn process_batch<'a>(
    runner: Runner<'a>,
    queue: Queue,
    deliveries: &'a [Delivery],
) -> Pin<Box<dyn Future<Output = Vec<Decision>> + 'a>> {
    Box::pin(process_batch_inner(runner, queue, deliveries))
}

async fn process_batch_inner(
    runner: Runner<'_>,
    queue: Queue,
    deliveries: &[Delivery],
) -> Vec<Decision> {
    let ports = runner.ports;
    let n = i64::try_from(deliveries.len()).unwrap_or(i64::MAX);
    let mut started = WorkerMetrics::default();
    started.record_active(queue, n);
    flush_metrics(ports, &started).await;

    let envelopes: Vec<_> = deliveries
        .iter()
        .map(|d| Envelope::parse(&d.body))
        .collect();
    let ids: Vec<&str> = envelopes
        .iter()
        .filter_map(|e| e.as_ref().ok().map(|e| e.id.as_str()))
        .collect();
    let applied = match ports.sql {
        Some(sql) => already_processed(sql, &ids).await,
        None => Err(()),
    };
    let salts = SaltCache::default();
    let jobs: Vec<_> = deliveries
        .iter()
        .zip(&envelopes)
        .map(|(delivery, envelope)| {
            process_one(runner, queue, delivery, envelope, &applied, &salts)
        })
        .collect();
    let mut results = run_bounded(jobs, runner.config.concurrency).await;
    commit_batch(ports.sql, &mut results).await;

    let mut finished = WorkerMetrics::default();
    finished.record_active(queue, -n);
    let mut decisions = Vec::with_capacity(results.len());
    for ((delivery, envelope), ran) in deliveries.iter().zip(&envelopes).zip(results) {
        let attempt = settle(runner, queue, delivery, envelope, ran).await;
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

/// The event ids of `ids` already applied, in one statement per
/// `LOOKUP_CHUNK` ids. `Err` when storage could not answer.
async fn already_processed(sql: &dyn Sql, ids: &[&str]) -> Result<Vec<String>, ()> {
    let mut applied = Vec::new();
    for chunk in ids.chunks(LOOKUP_CHUNK) {
        let marks = (1..=chunk.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let statement = format!("{ALREADY_PROCESSED_IN}{marks})");
        let params: Vec<SqlValue> = chunk.iter().map(|id| (*id).into()).collect();
        let rows = sql.execute(&statement, &params).await.map_err(|e| {
            tracing::error!(target: "tepi::jobs", error = %e, "could not look up applied jobs");
        })?;
        applied.extend(
            rows.rows
                .iter()
                .filter_map(|row| row.first().and_then(SqlValue::as_text).map(str::to_owned)),
        );
    }
    Ok(applied)
}

/// Commits the deferred writes of every job that ran: all in one batch, or
/// — when that fails — each job's alone, failing only the jobs whose own
/// writes cannot be committed.
async fn commit_batch(sql: Option<&dyn Sql>, results: &mut [Ran]) {
    let deferred: Vec<Statement> = results
        .iter()
        .filter_map(|r| r.outcome.as_ref().ok().and_then(Option::as_ref))
        .flatten()
        .cloned()
        .collect();
    if deferred.is_empty() {
        return;
    }
    let Some(sql) = sql else { return };
    if sql.batch(&deferred).await.is_ok() {
        return;
    }
    tracing::warn!(target: "tepi::jobs", jobs = results.len(),
        "a batch's writes failed together: committing each job's alone");
    for ran in results.iter_mut() {
        if let Ok(Some(writes)) = &ran.outcome
            && let Err(e) = sql.batch(writes).await
        {
            tracing::error!(target: "tepi::jobs", error = %e, "could not record a job's writes");
            ran.outcome = Err(Failure::Unreachable);
        }
    }
}

pub(crate) async fn flush_metrics(ports: &Ports<'_>, delta: &WorkerMetrics) {
    let Some(sql) = ports.sql else { return };
    if let Err(e) = worker_metrics::flush(sql, delta).await {
        tracing::error!(target: "tepi::jobs", error = %e, "could not record worker metrics");
    }
}

struct Attempt {
    decision: Decision,
    failure: Option<FailureClass>,
    lag_secs: f64,
    duration_ms: f64,
}

/// A job that has run: its writes still to commit (`Ok(Some)`), nothing
/// to commit (`Ok(None)`: already applied, or committed by the job
/// itself), or why it failed.
struct Ran {
    outcome: Result<Option<Vec<Statement>>, Failure>,
    started: Timestamp,
    lag_secs: f64,
}

/// Everything one job needs while it runs.
pub struct Job<'a> {
    pub config: &'a JobsConfig,
    pub sql: &'a dyn Sql,
    pub jobs: &'a dyn Jobs,
    pub blobs: Option<&'a dyn Blobs>,
    pub ports: &'a Ports<'a>,
    pub queue: Queue,
    pub envelope: &'a Envelope,
    /// This job's own span of the envelope's trace.
    pub trace: TraceParent,
    pub started: Timestamp,
    /// No retry follows this attempt, whatever happens.
    pub last_attempt: bool,
    /// Whether the job has published an event (its writes then commit
    /// before the batch's).
    published: Cell<bool>,
    /// The webhook salts the batch's jobs have read so far, by tenant.
    pub(crate) salts: &'a SaltCache,
}

impl std::fmt::Debug for Job<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("event_id", &self.envelope.id)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

async fn process_one(
    runner: Runner<'_>,
    queue: Queue,
    delivery: &Delivery,
    envelope: &Result<Envelope, &'static str>,
    applied: &Result<Vec<String>, ()>,
    salts: &SaltCache,
) -> Ran {
    let (config, ports) = (runner.config, runner.ports);
    let started = ports.clock.now();
    let attempt = delivery.attempt.max(1);
    let lag_secs = envelope
        .as_ref()
        .map_or(0.0, |e| started.millis_since(e.time) / 1000.0);
    let outcome = match envelope {
        Err(why) => {
            tracing::error!(target: "tepi::jobs", queue = queue.as_str(), attempt, reason = why,
                "malformed job");
            Err(Failure::Invalid)
        }
        Ok(envelope) => match applied {
            Err(()) => Err(Failure::Unreachable),
            Ok(applied) if applied.contains(&envelope.id) => {
                tracing::info!(target: "tepi::jobs", event_id = %envelope.id,
                    "already applied: redelivery ignored");
                Ok(None)
            }
            Ok(_) => {
                let last = attempt >= config.retry.max_attempts;
                run_job(runner, queue, envelope, started, last, salts).await
            }
        },
    };
    Ran {
        outcome,
        started,
        lag_secs,
    }
}

/// Decides a job that has run and committed (or failed to): ack, retry or
/// dead letter, what a given-up job leaves behind, and its log line.
async fn settle(
    runner: Runner<'_>,
    queue: Queue,
    delivery: &Delivery,
    envelope: &Result<Envelope, &'static str>,
    ran: Ran,
) -> Attempt {
    let (config, ports) = (runner.config, runner.ports);
    let attempt = delivery.attempt.max(1);
    let Ran {
        outcome,
        started,
        lag_secs,
    } = ran;
    let decision = decide(outcome.map(|_| ()), attempt, &config.retry, ports.entropy);
    if let (Ok(envelope), Decision::DeadLetter { reason, .. }, Some(sql)) =
        (envelope, &decision, ports.sql)
    {
        tracing::warn!(target: "tepi::jobs", event_id = %envelope.id, reason, "job dead-lettered");
        let route = runner
            .table
            .iter()
            .find(|r| r.handles(&envelope.event_type));
        if let Some(give_up) = route.and_then(|r| r.give_up) {
            give_up(sql, envelope, ports.clock.now()).await;
        }
    }
    let duration_ms = ports.clock.now().millis_since(started);
    if let Ok(envelope) = envelope {
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

/// Runs one parsed job, not applied before, within its time budget.
/// Answers the writes to commit with the batch, or `None` when the job
/// published something and so committed its writes itself.
async fn run_job(
    runner: Runner<'_>,
    queue: Queue,
    envelope: &Envelope,
    started: Timestamp,
    last_attempt: bool,
    salts: &SaltCache,
) -> Result<Option<Vec<Statement>>, Failure> {
    let (config, ports) = (runner.config, runner.ports);
    let sql = ports.sql.ok_or(Failure::Unreachable)?;
    // Which module's job.
    let Some(route) = runner
        .table
        .iter()
        .find(|r| r.handles(&envelope.event_type))
    else {
        tracing::error!(target: "tepi::jobs", event_type = %envelope.event_type, "unknown job type");
        return Err(Failure::Invalid);
    };
    if route.queue != queue {
        tracing::error!(target: "tepi::jobs", event_type = %envelope.event_type,
            queue = queue.as_str(), "job on the wrong queue");
        return Err(Failure::Invalid);
    }
    let now = started;
    let fallbacks = Fallbacks::new(ports, now, runner.blobs_in_kv);
    let job = Job {
        config,
        sql,
        jobs: fallbacks.jobs().ok_or(Failure::Unreachable)?,
        blobs: fallbacks.blobs(),
        ports,
        queue,
        envelope,
        trace: envelope.trace.map_or_else(
            || TraceParent::start(ports.entropy),
            |t| t.child(ports.entropy),
        ),
        started,
        last_attempt,
        published: Cell::new(false),
        salts,
    };
    let work = async {
        let mut writes = Vec::new();
        for step in &route.steps {
            match step(&job).await? {
                Step::Next(more) => writes.extend(more),
                Step::Done(more) => {
                    writes.extend(more);
                    break;
                }
            }
        }
        writes.push(Statement::new(
            MARK_PROCESSED,
            vec![
                envelope.id.clone().into(),
                queue.as_str().into(),
                envelope.tenant.as_str().into(),
                now.as_unix_secs().into(),
            ],
        ));
        if !job.published.get() {
            return Ok(Some(writes));
        }
        // What this job published may run before the batch ends, and must
        // find this job's writes: commit them now.
        sql.batch(&writes).await.map_err(|e| {
            tracing::error!(target: "tepi::jobs", error = %e, "could not record a job's writes");
            Failure::Unreachable
        })?;
        Ok(None)
    };
    match ports.timer {
        Some(timer) => {
            let budget = timer.sleep(config.timeout_ms);
            match race(work, budget).await {
                Some(result) => result,
                None => Err(Failure::Timeout),
            }
        }
        None => work.await,
    }
}

/// A stable id derived from `parts`, so a redelivered job writes the same
/// rows (and `INSERT OR IGNORE` keeps one).
pub fn derived_id(prefix: &str, parts: &[&str]) -> String {
    let digest = secret::digest(&parts.join("\u{1f}"));
    format!("{prefix}{}", &digest[..24.min(digest.len())])
}

impl Job<'_> {
    pub fn tenant(&self) -> &str {
        self.envelope.tenant.as_str()
    }

    pub fn secs(&self) -> i64 {
        self.started.as_unix_secs()
    }

    pub async fn query(
        &self,
        statement: &str,
        params: Vec<SqlValue>,
    ) -> Result<crate::ports::Rows, Failure> {
        self.sql.execute(statement, &params).await.map_err(|e| {
            tracing::error!(target: "tepi::jobs", error = %e, "storage failed during a job");
            Failure::Unreachable
        })
    }

    /// Publishes an event continuing this job's trace.
    pub async fn publish<E: Event>(&self, event: &E, delay_secs: u32) -> Result<(), Failure> {
        let envelope = events::envelope_in_trace(
            event,
            &self.envelope.tenant,
            self.envelope.request_id.as_str(),
            &self.trace,
            self.ports.entropy,
            self.ports.clock.now(),
        );
        // Set before sending: a send that fails after the message left
        // still commits this job's writes first.
        self.published.set(true);
        self.jobs
            .enqueue_after(E::QUEUE, &envelope.to_string(), delay_secs)
            .await
            .map_err(|e| {
                tracing::error!(target: "tepi::jobs", error = %e, "could not publish");
                Failure::Unreachable
            })
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
