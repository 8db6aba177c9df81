//! Prometheus metrics: the request metrics an instance counts, the
//! exposition format (encoder and parser), the aggregate across instances
//! and pushers, the Pushgateway-compatible push, Web Vitals beacons and
//! gzip-encoded bodies, and the limits pushes live within.

pub mod aggregate;
pub mod exposition;
pub mod gzip;
pub mod limits;
pub mod push;
mod requests;
pub mod rum;

pub use requests::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Seconds after which a pushed series or a gauge nobody writes expires.
    pub ttl_secs: u32,
    /// Seconds between an instance's flushes of its deltas (Workers).
    pub flush_secs: u32,
    /// Bounds on pushes and the aggregate's size.
    pub push: limits::PushLimits,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            ttl_secs: 600,
            flush_secs: 5,
            push: limits::PushLimits::default(),
        }
    }
}
