//! Operations: what the platform's operators use to run Tepi itself. The
//! alert inbox (`alerts.rs`) takes Alertmanager's webhook, keeps each alert
//! by fingerprint and tells the operator tenant's admins (their inboxes and
//! the configured on-call webhooks) when one fires or resolves. Load-test
//! baselines (`baselines.rs`) keep a k6 run's summary per branch, scenario
//! and build, for the next run to be compared with. The console's history
//! (`history.rs`) keeps a snapshot of the dashboard's series per minute
//! beside the metrics aggregate.

pub mod alerts;
pub mod baselines;
pub mod history;
