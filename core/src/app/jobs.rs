//! The job table: which module's job runs for which event type, and the
//! App's side of the queues — a batch from a queue, a dead letter to park,
//! an outbox drain — each migrating first like a request would.
//!
//! To add a job: an event type in `jobs/events.rs`, its step in the
//! owning module's `job.rs`, and one row here.

use std::future::Future;
use std::pin::Pin;

use super::App;
use crate::jobs::consumer::{self, Delivery, Envelope, Job, JobReply, JobRoute, JobStep, Runner};
use crate::jobs::dead_letters;
use crate::jobs::drain::{self, Drained};
use crate::jobs::events::{
    Event, NotificationWebhookRequested, UploadReceived, WorkflowRunRequested,
};
use crate::jobs::retry::Decision;
use crate::ports::{PortError, Ports, Queue, Sql};
use crate::time::Timestamp;
use crate::{notifications, uploads, workflows};

/// Turns a module's `async fn(&Job) -> Result<Step, Failure>`
/// into a table step.
macro_rules! step {
    ($f:path) => {{
        fn run<'a>(job: &'a Job<'a>) -> JobReply<'a> {
            Box::pin($f(job))
        }
        run as JobStep
    }};
}

fn fail_run<'a>(
    sql: &'a dyn Sql,
    envelope: &'a Envelope,
    now: Timestamp,
) -> Pin<Box<dyn Future<Output = ()> + 'a>> {
    Box::pin(workflows::job::fail_run(sql, envelope, now))
}

/// Every job: the event type, its queue, the steps, what a run that gave
/// up leaves behind.
pub fn job_table() -> Vec<JobRoute> {
    vec![
        JobRoute {
            event: NotificationWebhookRequested::TYPE,
            queue: NotificationWebhookRequested::QUEUE,
            steps: vec![step!(notifications::job::deliver)],
            give_up: None,
        },
        JobRoute {
            event: WorkflowRunRequested::TYPE,
            queue: WorkflowRunRequested::QUEUE,
            steps: vec![step!(workflows::job::run)],
            give_up: Some(fail_run),
        },
        // A verified upload starts the workflows it triggers.
        JobRoute {
            event: UploadReceived::TYPE,
            queue: UploadReceived::QUEUE,
            steps: vec![step!(uploads::job::check), step!(workflows::job::trigger)],
            give_up: None,
        },
        // Meta's events (`meta.<object>.<field>`) start the workflows they
        // trigger.
        JobRoute {
            event: "meta.",
            queue: Queue::MetaEvents,
            steps: vec![step!(workflows::job::trigger)],
            give_up: None,
        },
    ]
}

impl App {
    fn runner<'a>(&'a self, table: &'a [JobRoute], ports: &'a Ports<'a>) -> Runner<'a> {
        Runner {
            config: &self.config.jobs,
            table,
            ports,
            blobs_in_kv: self.cache_in_kv,
        }
    }

    /// Processes a batch of queue messages: one decision per delivery.
    pub async fn process_jobs(
        &self,
        queue: Queue,
        deliveries: &[Delivery],
        ports: &Ports<'_>,
    ) -> Vec<Decision> {
        if let Some(sql) = ports.sql {
            self.ensure_migrated(sql).await;
        }
        let table = job_table();
        consumer::process_batch(self.runner(&table, ports), queue, deliveries).await
    }

    /// Parks a message of a dead-letter queue.
    pub async fn park_dead_letter(
        &self,
        queue: Queue,
        delivery: &Delivery,
        ports: &Ports<'_>,
    ) -> Decision {
        if let Some(sql) = ports.sql {
            self.ensure_migrated(sql).await;
        }
        dead_letters::park(ports, &self.config.jobs, queue, delivery).await
    }

    /// Called by an adapter once the response is sent: when the request put
    /// jobs in the SQL outbox (Spin), drains up to
    /// `JOB_DRAIN_AFTER_RESPONSE` due jobs, so they run now rather than at
    /// the next scheduled `POST /v1/jobs/drain`. The lease keeps concurrent
    /// drains apart, as for the endpoint. `None` when nothing was drained.
    ///
    /// An instance that lives for one request (Spin) first takes the
    /// minute's history snapshot, when no request has yet: after the
    /// answer, so no client waits for it.
    pub async fn after_response(&self, ports: &Ports<'_>) -> Option<Drained> {
        if self.metrics_in_sql
            && ports.aggregator.is_none()
            && let (Some(aggregator), Some(sql)) = (self.store(ports), ports.sql)
        {
            crate::ops::history::record(&aggregator, sql, ports.clock.now(), false).await;
        }
        let limit = self.config.jobs.drain_after_response;
        if !self.outboxed.replace(false) || limit == 0 {
            return None;
        }
        match self.drain(ports, limit).await {
            Ok(drained) => {
                tracing::info!(target: "tepi::jobs", leased = drained.leased,
                    acked = drained.acked, retried = drained.retried,
                    dead_lettered = drained.dead_lettered, "drained after response");
                Some(drained)
            }
            Err(e) => {
                // The jobs stay due for the next drain.
                tracing::warn!(target: "tepi::jobs", error = %e, "drain after response failed");
                None
            }
        }
    }

    /// Runs due jobs of the SQL outbox (Spin's `POST /v1/jobs/drain`).
    /// Boxed: its two callers (the endpoint, `after_response`) share one
    /// copy of the drain's state machine instead of each inlining it.
    pub(super) fn drain<'a>(
        &'a self,
        ports: &'a Ports<'a>,
        limit: u32,
    ) -> Pin<Box<dyn Future<Output = Result<Drained, PortError>> + 'a>> {
        Box::pin(async move {
            let sql = ports.sql.ok_or_else(|| PortError("no SQL store".into()))?;
            let table = job_table();
            drain::drain(self.runner(&table, ports), sql, limit).await
        })
    }
}
