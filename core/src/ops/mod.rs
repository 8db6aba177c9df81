//! Operations: what the platform's operators use to run Tepi itself. The
//! alert inbox (`alerts.rs`) takes Alertmanager's webhook, keeps each alert
//! by fingerprint and tells the operator tenant's admins (their inboxes and
//! the configured on-call webhooks) when one fires or resolves.

pub mod alerts;
