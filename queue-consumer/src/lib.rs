//! Cloudflare Queues consumer for Tepi's background jobs.
//!
//! The queues, their dead-letter queues and the consumer's processing
//! decisions arrive with the queue-consumer work; this crate already builds
//! for the host and for `wasm32-unknown-unknown` so that the workspace,
//! lints and gates cover it from the start. Like the edge adapters it may
//! only convert and wire: job logic belongs in `tepi-core`.

/// The core version this consumer is built against, so a deployed consumer
/// can be matched to the API it serves.
pub const CORE_VERSION: &str = tepi_core::BuildInfo::for_target("queue-consumer").version;
