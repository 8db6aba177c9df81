//! Background jobs: CloudEvents envelopes and the events they carry, the
//! consumer loop that runs a batch and decides each delivery, the retry
//! decision, dead letters, the SQL outbox and its drain (Spin), the worker
//! metrics and signed webhook delivery. What each job *does* belongs to
//! the module that owns its tables (`uploads/job.rs`, …); the job table in
//! `app/jobs.rs` routes event types to them.

pub mod consumer;
pub mod dead_letters;
pub mod drain;
pub mod events;
pub mod metrics;
pub mod outbox;
pub mod retry;
pub mod targets;
pub mod webhook;

use crate::ports::Queue;
use crate::secret::Secret;

/// How jobs run: retries, time budget, concurrency, the outbox lease and
/// where webhooks may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobsConfig {
    pub retry: retry::RetryPolicy,
    pub timeout_ms: u32,
    pub concurrency: usize,
    pub lease_secs: u32,
    /// Spin: due outbox jobs drained right after answering a request that
    /// put jobs in the outbox; 0: none (`JOB_DRAIN_AFTER_RESPONSE`).
    pub drain_after_response: u32,
    /// Seconds before a message that could not be settled (parked, or
    /// forwarded to its dead-letter queue) is offered again.
    pub settle_retry_secs: u32,
    /// Cloudflare queue names are `<prefix><queue>` and, for dead letters,
    /// `<prefix><queue>-dlq` (`QUEUE_PREFIX`, as in wrangler.toml).
    pub queue_prefix: String,
    /// `WEBHOOK_SIGNING_SECRET`: the platform key each tenant's webhook
    /// secret is derived from (`auth::webhook_secret`), never a receiver's.
    /// `None`: webhook deliveries fail until it is set.
    pub webhook_secret: Option<Secret>,
    /// Lowercase `host` or `host:port` entries allowed over `http://`.
    pub webhook_http_hosts: Vec<String>,
    /// When not empty, the only hosts webhooks may reach.
    pub webhook_allowed_hosts: Vec<String>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            retry: retry::RetryPolicy::default(),
            timeout_ms: 15_000,
            concurrency: 8,
            lease_secs: 60,
            drain_after_response: 25,
            settle_retry_secs: 30,
            queue_prefix: "tepi-".to_owned(),
            webhook_secret: None,
            webhook_http_hosts: Vec::new(),
            webhook_allowed_hosts: Vec::new(),
        }
    }
}

/// What a platform queue carries, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueRole {
    /// `<prefix><queue>`: jobs to run.
    Jobs(Queue),
    /// `<prefix><queue>-dlq`: dead letters to park.
    DeadLetters(Queue),
}

/// The suffix of a dead-letter queue's name.
const DEAD_LETTER_SUFFIX: &str = "-dlq";

impl JobsConfig {
    /// The platform queue of `queue`'s jobs: `<prefix><queue>`.
    pub fn queue_name(&self, queue: Queue) -> String {
        format!("{}{}", self.queue_prefix, queue.as_str())
    }

    /// The platform queue of `queue`'s dead letters: `<prefix><queue>-dlq`.
    pub fn dead_letter_queue_name(&self, queue: Queue) -> String {
        self.queue_name(queue) + DEAD_LETTER_SUFFIX
    }

    /// What the platform queue `name` carries; `None` for a queue that is
    /// not Tepi's.
    pub fn queue_role(&self, name: &str) -> Option<QueueRole> {
        Queue::ALL.into_iter().find_map(|queue| {
            if name == self.queue_name(queue) {
                Some(QueueRole::Jobs(queue))
            } else if name == self.dead_letter_queue_name(queue) {
                Some(QueueRole::DeadLetters(queue))
            } else {
                None
            }
        })
    }

    /// Whether a job may deliver to `url` (`targets::check`).
    pub fn webhook_url_allowed(&self, url: &str) -> bool {
        targets::check(self, url).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_follow_the_prefix_and_read_back() {
        let mut config = JobsConfig::default();
        assert_eq!(config.queue_name(Queue::MetaEvents), "tepi-meta-events");
        assert_eq!(
            config.dead_letter_queue_name(Queue::MetaEvents),
            "tepi-meta-events-dlq"
        );
        config.queue_prefix = "stage-".into();
        for queue in Queue::ALL {
            assert_eq!(
                config.queue_role(&config.queue_name(queue)),
                Some(QueueRole::Jobs(queue))
            );
            assert_eq!(
                config.queue_role(&config.dead_letter_queue_name(queue)),
                Some(QueueRole::DeadLetters(queue))
            );
        }
        for foreign in [
            "tepi-workflows",
            "stage-",
            "stage-workflows-dlq-dlq",
            "stage-other",
        ] {
            assert_eq!(config.queue_role(foreign), None, "{foreign}");
        }
    }
}
