//! Background jobs: CloudEvents envelopes and the events they carry, the
//! consumer loop that runs a batch and decides each delivery, the retry
//! decision, dead letters, the SQL outbox and its drain (Spin), the worker
//! metrics and signed webhook delivery. What each job *does* belongs to
//! the module that owns its tables (`uploads/job.rs`, …); the job table in
//! `app/jobs.rs` routes event types to them.

pub mod consumer;
pub mod events;
pub mod metrics;
pub mod outbox;
pub mod retry;

use crate::secret::Secret;

/// How jobs run: retries, time budget, concurrency, the outbox lease and
/// where webhooks may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobsConfig {
    pub retry: retry::RetryPolicy,
    pub timeout_ms: u32,
    pub concurrency: usize,
    pub lease_secs: u32,
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
            webhook_secret: None,
            webhook_http_hosts: Vec::new(),
            webhook_allowed_hosts: Vec::new(),
        }
    }
}

impl JobsConfig {
    /// Whether a job may deliver to `url`: any `https://` URL, or `http://`
    /// to a listed host.
    pub fn webhook_url_allowed(&self, url: &str) -> bool {
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) || url.len() > 2048 {
            return false;
        }
        let (rest, https) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
            (Some(rest), _) => (rest, true),
            (None, Some(rest)) => (rest, false),
            (None, None) => return false,
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let authority = authority.to_ascii_lowercase();
        let host = authority.split(':').next().unwrap_or("");
        let listed = |list: &[String]| list.iter().any(|h| *h == authority || *h == host);
        !host.is_empty()
            && (https || listed(&self.webhook_http_hosts))
            && (self.webhook_allowed_hosts.is_empty() || listed(&self.webhook_allowed_hosts))
    }
}
